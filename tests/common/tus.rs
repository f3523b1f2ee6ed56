//! The tus clients of `tests/peers/`, run with the peers venv's Python against a
//! real tus server (rustus, tusd; nginx in front or not): tuspy
//! (`tus_upload.py`) and the hand-written concatenation requests
//! (`tus_concat.py`), both with upload tokens minted by the real granite-assets.
//! Each prints one JSON object (`ok`, `status`, `body`, `url`, `phase`...) and
//! fails only on a bug of its own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{files_under, peer_python, random_file, repo, wait_for_file, write};

/// `tests/peers/<script> --endpoint <endpoint> --secret <secret> <args>`: the
/// JSON it printed. A failure of the script itself fails the test, with
/// `logs()` (the servers' logs) in the message.
pub fn run_client(
    script: &str,
    endpoint: &str,
    secret: &str,
    args: &[&str],
    logs: impl Fn() -> String,
) -> Value {
    let out = Command::new(peer_python())
        .arg(repo().join("tests/peers").join(script))
        .args(["--endpoint", endpoint, "--secret", secret])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tus client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client output {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A gate behind a tus server, as the upload tests drive it: the clients
/// against its tus endpoint, with tokens granite signs with the gate's upload
/// secret, and the asset tree its post-finish publishes to.
pub trait TusStack {
    /// The tus endpoint the clients use (`…/files/`).
    fn endpoint(&self) -> String;

    /// The secret granite signs upload tokens with (one the gate accepts).
    fn upload_secret(&self) -> &str;

    /// The gate's asset tree (`[storage] root`).
    fn assets(&self) -> &Path;

    /// What the processes logged, for failure messages.
    fn logs(&self) -> String;

    /// tuspy uploads `file` with a granite token for `key`; `extra` are more
    /// `tus_upload.py` flags (`--chunk-size`, `--stop-at`, `--url`, `--ttl`,
    /// `--tamper`...).
    fn upload(&self, file: &Path, key: &str, ct: &str, vis: &str, extra: &[&str]) -> Value {
        let mut args = vec!["--file", file.to_str().expect("a UTF-8 path")];
        args.extend(["--key", key, "--content-type", ct, "--visibility", vis]);
        args.extend_from_slice(extra);
        let (endpoint, secret) = (self.endpoint(), self.upload_secret());
        run_client("tus_upload.py", &endpoint, secret, &args, || self.logs())
    }

    /// `tus_concat.py` with a granite token for `key`; `command` is its
    /// subcommand with its flags (`parallel`, `partial`, `final`).
    fn concat(&self, key: &str, ct: &str, vis: &str, command: &[&str]) -> Value {
        let mut args = vec!["--key", key, "--content-type", ct, "--visibility", vis];
        args.extend_from_slice(command);
        let (endpoint, secret) = (self.endpoint(), self.upload_secret());
        run_client("tus_concat.py", &endpoint, secret, &args, || self.logs())
    }

    /// post-finish moves the file in the background: waits for `rel` in the
    /// asset tree, its bytes.
    fn wait_asset(&self, rel: &str) -> Vec<u8> {
        if let Some(b) = wait_for_file(&self.assets().join(rel), Duration::from_secs(20)) {
            return b;
        }
        panic!("{rel} never appeared in the asset tree\n{}", self.logs());
    }

    /// Every file of the asset tree, sorted.
    fn asset_files(&self) -> Vec<String> {
        files_under(self.assets())
    }

    /// [`upload`](Self::upload) of `file` (whose bytes are `data`), asserting
    /// that the client succeeded and that the same bytes landed at
    /// `<vis>/<key>`; the client's answer.
    fn upload_lands(
        &self,
        file: &Path,
        data: &[u8],
        key: &str,
        ct: &str,
        vis: &str,
        extra: &[&str],
    ) -> Value {
        let r = self.upload(file, key, ct, vis, extra);
        assert_eq!(r["ok"], true, "{r}\n{}", self.logs());
        assert!(
            self.wait_asset(&format!("{vis}/{key}")) == data,
            "{vis}/{key}: different bytes"
        );
        r
    }

    /// Asserts a refusal the client saw: status, JSON `error.code`, a message,
    /// and no upload secret in the body.
    fn assert_refused(&self, what: &str, r: &Value, status: u64, code: &str) {
        assert_eq!(r["ok"], false, "{what}: {r}");
        assert_eq!(r["status"], status, "{what}: {r}\n{}", self.logs());
        let body: Value = serde_json::from_str(r["body"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {r}"));
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        assert!(
            !r["body"].as_str().unwrap().contains(self.upload_secret()),
            "{what}: leaks the secret"
        );
    }

    /// Puts an asset `private/taken.png` ("original") in the tree, then has
    /// tuspy try each of [`refusals`] and asserts its refusal
    /// ([`assert_refused`](Self::assert_refused)); `check` is the test's own
    /// assertion on each answer (name, answer). The gate must run with
    /// [`REFUSALS_UPLOAD_CONFIG`].
    fn assert_refusals(&self, check: impl Fn(&str, &Value)) {
        let tmp = tempfile::tempdir().unwrap();
        let (small, _) = random_file(tmp.path(), "small.bin", 2000);
        let (big, _) = random_file(tmp.path(), "big.bin", 2 * 1024 * 1024);
        write(&self.assets().join("private/taken.png"), "original");
        for (name, file, key, ct, extra, status, code) in refusals(&small, &big) {
            let r = self.upload(file, key, ct, "private", &extra);
            self.assert_refused(name, &r, status, code);
            check(name, &r);
        }
    }
}

/// The `[upload]` settings [`TusStack::assert_refusals`] expects of the gate.
pub const REFUSALS_UPLOAD_CONFIG: &str =
    "content_types = [\"image/*\", \"text/plain\"]\nmax_size = 1048576\n";

/// A refusal at pre-create: (name, file, key, content type, client flags,
/// status, error code).
type Refusal<'a> = (&'a str, &'a Path, &'a str, &'a str, Vec<&'a str>, u64, &'a str);

/// What pre-create refuses, each for its own reason, under
/// [`REFUSALS_UPLOAD_CONFIG`] with an asset `private/taken.png` already in the
/// tree: `small` is a file under `max_size`, `big` one over it.
fn refusals<'a>(small: &'a Path, big: &'a Path) -> Vec<Refusal<'a>> {
    vec![
        (
            "tampered",
            small,
            "a/t.png",
            "image/png",
            vec!["--tamper", "content-type=image/gif"],
            403,
            "token_invalid",
        ),
        (
            "expired",
            small,
            "a/e.png",
            "image/png",
            vec!["--ttl", "-300"],
            403,
            "token_expired",
        ),
        (
            "traversal",
            small,
            "../../etc/evil.png",
            "image/png",
            vec![],
            400,
            "key_invalid",
        ),
        (
            "too large",
            big,
            "a/big.png",
            "image/png",
            vec![],
            413,
            "too_large",
        ),
        (
            "type",
            small,
            "a/x.exe",
            "application/x-msdownload",
            vec![],
            415,
            "content_type_not_allowed",
        ),
        ("exists", small, "taken.png", "image/png", vec![], 409, "exists"),
    ]
}
