//! `serve --dev`: a first look without writing a configuration. Fresh random
//! secrets (see [`super::start`]); with neither `[storage] root` nor `[tusd]
//! upload_dir` configured, a temporary tree for uploads (removed when the
//! daemon stops): `assets/` as the storage root, `uploads/` as tusd's upload
//! directory, and a small file to upload. The banner (stdout: the logs are on
//! stderr) prints what to run, every command quoted by
//! [`crate::cli::printed`]: tusd against the tree, a signed creation request
//! carrying the file (tus creation-with-upload: one `curl`); when the upload
//! is published, [`landed`] prints where it is and a signed link to it,
//! served by the daemon itself in dev mode ([`crate::http::dev_files`]), so
//! no nginx is needed for the first look.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::cli::printed::{command, creation_curl, encode_path, upload_metadata, Body};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::policy::Visibility;
use crate::publisher::{Landed, OnPublished};
use crate::token::link;

/// The key of the file the banner's upload sends.
pub const KEY: &str = "dev/hello.txt";
/// Its bytes.
pub const PAYLOAD: &[u8] = b"hello from assetgate --dev\n";
/// How long the printed tokens and links are valid.
const TTL: i64 = 3600;

/// The temporary upload tree of one `--dev` run.
#[derive(Debug)]
pub struct Playground {
    /// Removed (with everything in it) when dropped.
    dir: tempfile::TempDir,
    /// The port the printed tusd command listens on (free when chosen).
    tusd_port: u16,
}

impl Playground {
    /// Makes the tree and points `config` at it, unless `config` has a
    /// storage root or an upload directory of its own (then `None`: the
    /// operator's tree is used as configured), or stores in a bucket
    /// (`[storage] backend = "s3"`: no tree at all; `root` and `upload_dir`
    /// are refused with it).
    pub fn make(config: &mut Config) -> Result<Option<Playground>, ConfigError> {
        if config.storage.root.is_some() || config.tusd.upload_dir.is_some() || config.storage.s3.is_some() {
            return Ok(None);
        }
        let fail = |e: std::io::Error| {
            ConfigError::new("serve --dev", format!("cannot make a temporary upload tree: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("assetgate-dev-")
            .tempdir()
            .map_err(fail)?;
        for sub in ["assets", "uploads"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(fail)?;
        }
        std::fs::write(dir.path().join("hello.txt"), PAYLOAD).map_err(fail)?;
        // A port for tusd: free now (the banner says which).
        let tusd_port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(fail)?;
        config.storage.root = Some(dir.path().join("assets"));
        config.tusd.upload_dir = Some(dir.path().join("uploads"));
        Ok(Some(Playground { dir, tusd_port }))
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn payload(&self) -> PathBuf {
        self.path().join("hello.txt")
    }
}

/// The banner: the secrets, a signed link to check on `/auth`, and (with a
/// [`Playground`]) the commands of an upload.
pub fn banner(config: &Config, addr: &str, playground: Option<&Playground>) -> String {
    let link_secret = config.link.secrets.newest().expect("dev mode sets a link secret");
    let upload_secret = config
        .upload
        .secrets
        .newest()
        .expect("dev mode sets an upload secret");
    let now = SystemClock.now();
    let expires = now + TTL;
    let path = "/private/hello.txt";
    let md5 = link::sign(link_secret.expose(), path.as_bytes(), expires);
    let target = format!("{path}?md5={md5}&expires={expires}");
    let mut out = format!(
        "\nassetgate --dev: secrets generated for this run only (never use --dev in production)\n\
         \x20 ASSETGATE_LINK_SECRET={}\n\
         \x20 ASSETGATE_UPLOAD_SECRET={}\n\
         \x20 signed link (valid 1 h): {target}\n\
         \x20 check it:  curl -i -H 'X-Original-URI: {target}' http://{addr}/auth\n\
         \x20 (204 = valid; 403 + X-Assetgate-Reason = denied)\n",
        String::from_utf8_lossy(link_secret.expose()),
        String::from_utf8_lossy(upload_secret.expose()),
    );
    let Some(pg) = playground else {
        return out;
    };
    let uploads = pg.path().join("uploads").display().to_string();
    let hooks = format!("http://{addr}/tusd");
    let port = pg.tusd_port.to_string();
    let tusd = command([
        ("tusd", ""),
        ("-host", ""),
        ("127.0.0.1", ""),
        ("-port", ""),
        (port.as_str(), ""),
        ("-base-path", ""),
        ("/files/", ""),
        ("-upload-dir", ""),
        (uploads.as_str(), "the upload directory"),
        ("-hooks-http", ""),
        (hooks.as_str(), ""),
        ("-hooks-enabled-events", ""),
        ("pre-create,pre-finish,post-finish", ""),
        ("-disable-download", ""),
    ]);
    let metadata = upload_metadata(
        upload_secret.expose(),
        KEY,
        "text/plain",
        Visibility::Private,
        expires,
    );
    let body = Body::File {
        path: pg.payload(),
        len: PAYLOAD.len() as u64,
    };
    let curl = creation_curl(&format!("http://127.0.0.1:{port}/files/"), &metadata, &body);
    match (tusd, curl) {
        (Ok(tusd), Ok(curl)) => out.push_str(&format!(
            "\nassetgate --dev: uploads go to a temporary tree, removed when this daemon stops: {}\n\
             \x20 1. run tusd v2 (https://github.com/tus/tusd/releases) in another terminal:\n\
             \x20    {tusd}\n\
             \x20 2. upload {} with a signed creation request (valid 1 h; the bytes travel in the POST):\n\
             \x20    {curl}\n\
             \x20 3. once it lands, this terminal prints where it is and a signed link to download it.\n",
            pg.path().display(),
            pg.payload().display(),
        )),
        (Err(e), _) | (_, Err(e)) => out.push_str(&format!("\nassetgate --dev: no upload commands: {e}\n")),
    }
    out
}

/// What `--dev` prints when an upload lands: where, and (private assets) a
/// signed link served by the daemon itself.
pub fn landed(config: &Config, addr: SocketAddr) -> OnPublished {
    let secret = config.link.secrets.newest().map(|s| s.expose().to_vec());
    let prefix = config.storage.private_prefix.clone();
    let root = config.storage.root.clone();
    std::sync::Arc::new(move |l: &Landed| {
        let mut out = format!(
            "\nassetgate --dev: upload landed: {} ({} bytes)\n",
            l.path.display(),
            l.bytes
        );
        if let (Visibility::Private, Some(secret)) = (l.visibility, &secret) {
            // The path it landed at, below the root: what nginx serves (a
            // reload may have changed the prefix since the start).
            let uri = root
                .as_deref()
                .and_then(|r| l.path.strip_prefix(r).ok())
                .and_then(|rel| rel.to_str())
                .map_or_else(|| format!("/{prefix}/{}", l.key), |rel| format!("/{rel}"));
            let expires = SystemClock.now() + TTL;
            let md5 = link::sign(secret, uri.as_bytes(), expires);
            let url = format!("http://{addr}{}?md5={md5}&expires={expires}", encode_path(&uri));
            match command([("curl", ""), ("-sS", ""), ("--fail-with-body", ""), (url.as_str(), "the link")]) {
                Ok(curl) => out.push_str(&format!(
                    "\x20 download it (signed link, valid 1 h; nginx serves the same path and query in production):\n\
                     \x20    {curl}\n"
                )),
                Err(e) => out.push_str(&format!("\x20 no link: {e}\n")),
            }
        }
        // Called on the worker's task, which must not block: a stdout pipe
        // nobody reads would stall it.
        let print = move || {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(print)),
            Err(_) => print(),
        }
    })
}
