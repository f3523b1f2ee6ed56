//! Command line: `serve`, `sign`, `verify`, `check-config`, `finalize-pending`,
//! `healthcheck`, `revoke`, `unrevoke`, `revoked list`; `serve` itself is
//! [`crate::daemon::serve`].

pub mod printed;
pub mod revoke;
pub mod upload;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, ConfigError, Sources};
use crate::finalize::{self, Roots};
use crate::policy::Visibility;
use crate::publisher::{self, Publisher, Report};
use crate::token::{link, nginx_uri};
use crate::tusd::{self, Gate};
use printed::encode_path;

/// assetgate: presigned-URL gate for tusd uploads and nginx secure_link downloads.
#[derive(Parser, Debug)]
#[command(name = "assetgate", version, about)]
pub struct Cli {
    /// TOML config file (else $ASSETGATE_CONFIG; else built-in defaults + env).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Development mode: fresh random secrets, printed once with a curl example.
        #[arg(long)]
        dev: bool,
    },
    /// Sign a token with the newest configured secret.
    #[command(subcommand)]
    Sign(SignCmd),
    /// Verify a token and explain the verdict (exit 0 valid, 1 denied).
    #[command(subcommand)]
    Verify(VerifyCmd),
    /// Print the effective configuration, secrets redacted.
    CheckConfig,
    /// Move finished uploads that were never moved (daemon down, disk full) into
    /// the asset tree (or publish them in the bucket with `[storage] backend =
    /// "s3"`), under the same rules as post-finish. Safe to run any time.
    FinalizePending,
    /// The `[events]` outbox: list, show and retry events (works with the
    /// daemon running, through its admin socket, or stopped).
    #[command(subcommand)]
    Events(crate::events::cli::EventsCmd),
    /// `GET /healthz` (or `/readyz`) on the configured `listen` address (a wildcard
    /// address means loopback); exit 0 on 200, else 1. For container health checks
    /// in images without curl.
    Healthcheck {
        /// Ask `/readyz` instead of `/healthz`.
        #[arg(long)]
        ready: bool,
    },
    /// Revoke download links before they expire (kept until the longest
    /// remaining lifetime of what is revoked; see `[link] max_ttl`).
    #[command(subcommand)]
    Revoke(Target),
    /// Undo a revocation.
    #[command(subcommand)]
    Unrevoke(Target),
    /// Show revocations.
    #[command(subcommand)]
    Revoked(RevokedCmd),
}

#[derive(Subcommand, Debug)]
enum Target {
    /// One link: the URL (or `/path?md5=…&expires=…`) as it was handed out.
    Link {
        /// The link.
        url: String,
    },
    /// Every link whose `$uri` starts with this prefix (`/private/user-42/`).
    Prefix {
        /// The `$uri` prefix.
        prefix: String,
    },
    /// Every link to the private asset with this key (`invoices/inv-001.pdf`).
    Key {
        /// The asset key.
        key: String,
    },
}

impl Target {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Target::Link { url } => ("link", url),
            Target::Prefix { prefix } => ("prefix", prefix),
            Target::Key { key } => ("key", key),
        }
    }
}

#[derive(Subcommand, Debug)]
enum RevokedCmd {
    /// Every revocation in force, with when it lapses.
    List,
}

#[derive(Subcommand, Debug)]
enum SignCmd {
    /// A secure_link download link: prints `PATH?md5=…&expires=…`.
    Link {
        /// The path as nginx's `$uri` sees it (decoded, e.g. `/private/été 2026/a.jpg`).
        path: String,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// A tus upload creation request, as granite-assets' `build_upload_url`
    /// builds it: prints its headers (`Upload-Metadata` byte for byte
    /// granite's), or with `--curl URL` a ready-to-run `curl` command.
    Upload {
        /// The asset key (`invoices/inv-001.pdf`, no leading `/`).
        key: String,
        /// The declared MIME type (signed verbatim).
        #[arg(long, value_name = "TYPE")]
        content_type: String,
        /// Where the asset lands: `private` (granite's default) or `public`.
        #[arg(long, default_value = "private", value_parser = ["private", "public"])]
        visibility: String,
        #[command(flatten)]
        expiry: Expiry,
        /// Print a `curl` creation request to this tus endpoint
        /// (`http://127.0.0.1:1080/files/`) instead of the headers.
        #[arg(long, value_name = "URL")]
        curl: Option<String>,
        /// With `--curl`: send this file in the creation request
        /// (tus creation-with-upload; `Upload-Length` is its size).
        #[arg(long, value_name = "PATH", requires = "curl", conflicts_with = "length")]
        file: Option<PathBuf>,
        /// With `--curl`: create an upload of this many bytes, no data
        /// (`PATCH` them to the `Location` tusd answers).
        #[arg(long, value_name = "BYTES", requires = "curl")]
        length: Option<u64>,
    },
}

#[derive(Args, Debug)]
#[group(multiple = false)]
struct Expiry {
    /// Lifetime from now: seconds (`3600`) or a duration (`1h`, `90m`);
    /// default 1 h.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Absolute expiry, Unix seconds.
    #[arg(long, value_name = "UNIX")]
    expires: Option<i64>,
}

/// `--ttl`: plain seconds (as before), or a humantime duration (`1h`).
fn parse_ttl(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{e}"));
    }
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{e} (seconds, or a duration such as 1h or 90m)"))
}

impl Expiry {
    /// The absolute expiry: `--expires`, else now + `--ttl` (default 1 h).
    fn at(&self, now: i64) -> i64 {
        match (self.ttl, self.expires) {
            (_, Some(e)) => e,
            (ttl, None) => now.saturating_add(i64::try_from(ttl.unwrap_or(3600)).unwrap_or(i64::MAX)),
        }
    }
}

#[derive(Subcommand, Debug)]
enum VerifyCmd {
    /// A download link as the client requests it: `'/private/a.txt?md5=…&expires=…'`.
    Link {
        /// The request target (`$request_uri`), quoted for the shell.
        target: String,
        /// Verify as of this Unix time instead of now.
        #[arg(long, value_name = "UNIX")]
        now: Option<i64>,
    },
    /// A tus creation request's `Upload-Metadata`: the verdict pre-create
    /// gives it under this configuration (the daemon's own decision).
    Upload {
        /// The header's value (or the whole `Upload-Metadata: …` line),
        /// quoted for the shell.
        metadata: String,
        /// `Upload-Length` (without it: a deferred length,
        /// `Upload-Defer-Length: 1`).
        #[arg(long, value_name = "BYTES")]
        length: Option<u64>,
        /// Verify as of this Unix time instead of now.
        #[arg(long, value_name = "UNIX")]
        now: Option<i64>,
    },
}

/// Parses arguments, loads config, runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources {
        file: cli.config.clone(),
    };
    let config = match config::load(&sources) {
        Ok(c) => c,
        Err(e) => return ConfigError::exit(&e),
    };
    match cli.command {
        Command::Serve { dev } => crate::daemon::serve(config, sources, dev),
        Command::Revoke(t) => {
            let (kind, value) = t.parts();
            revoke::run(&config, revoke::Action::Revoke, kind, value)
        }
        Command::Unrevoke(t) => {
            let (kind, value) = t.parts();
            revoke::run(&config, revoke::Action::Unrevoke, kind, value)
        }
        Command::Revoked(RevokedCmd::List) => revoke::run(&config, revoke::Action::List, "", ""),
        Command::Sign(SignCmd::Link { path, expiry }) => sign_link(&config, &path, &expiry),
        Command::Verify(VerifyCmd::Link { target, now }) => verify_link(&config, &target, now),
        Command::Sign(SignCmd::Upload {
            key,
            content_type,
            visibility,
            expiry,
            curl,
            file,
            length,
        }) => {
            let now = SystemClock.now();
            let args = upload::SignUpload {
                key: &key,
                content_type: &content_type,
                visibility: Visibility::parse(&visibility).unwrap_or(Visibility::Private),
                expires: expiry.at(now),
                curl: curl.as_deref(),
                file: file.as_deref(),
                length,
            };
            upload::sign(&config, &args, now)
        }
        Command::Verify(VerifyCmd::Upload {
            metadata,
            length,
            now,
        }) => upload::verify(
            &config,
            &metadata,
            length,
            now.unwrap_or_else(|| SystemClock.now()),
        ),
        Command::FinalizePending => finalize_pending(&config),
        Command::Events(cmd) => match &config.events {
            Some(events) => crate::events::cli::run(events, &cmd),
            None => ConfigError::exit(&ConfigError {
                key: "events".into(),
                message: "no [events] section: there is no outbox".into(),
            }),
        },
        Command::Healthcheck { ready } => healthcheck(config.listen, ready),
        Command::CheckConfig => {
            print!("{}", config.redacted_toml());
            if config.link.secrets.is_empty() {
                eprintln!("warning: no link secret: every download link is denied");
            }
            if config.upload.secrets.is_empty() {
                eprintln!("warning: no upload secret: every upload is rejected");
            }
            ExitCode::SUCCESS
        }
    }
}

/// Where `finalize-pending` finds and publishes: the filesystem's roots, or
/// the bucket (`[storage] backend = "s3"`), with what it needs kept alive.
struct Pending {
    publisher: Publisher,
    /// What the scan lists (`upload_dir`, or `s3://bucket/upload_prefix`).
    location: String,
    /// The S3 SDK's runtime: the backend blocks on it from this thread.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Pending {
    fn of(config: &Config) -> Result<Pending, ExitCode> {
        if let Some(s3) = &config.storage.s3 {
            return Self::bucket(config, s3);
        }
        let roots = match Roots::from_config(config) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(ConfigError::exit(&ConfigError {
                    key: "storage.root / tusd.upload_dir".into(),
                    message: "both must be set to finalize uploads".into(),
                }))
            }
            Err(e) => return Err(ConfigError::exit(&e)),
        };
        Ok(Pending {
            location: roots.upload_dir().display().to_string(),
            publisher: Publisher::new(Arc::new(roots)),
            _runtime: None,
        })
    }

    /// The bucket: a small runtime for the SDK, the same capability
    /// self-test as `serve` (the publish method must be proven on the engine
    /// before anything is written), then the daemon's [`publisher::S3Backend`].
    fn bucket(config: &Config, s3: &config::S3Config) -> Result<Pending, ExitCode> {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start a runtime for the S3 client: {e}");
                return Err(ExitCode::FAILURE);
            }
        };
        let store = match runtime.block_on(crate::s3::Store::start(s3, &crate::metrics::Metrics::new())) {
            Ok(store) => store,
            Err(e) => {
                eprintln!("error: S3 bucket {:?}: {e}", s3.bucket);
                return Err(ExitCode::FAILURE);
            }
        };
        let stale = publisher::Stale {
            max_ttl: config.upload.max_ttl,
            clock_skew: config.upload.clock_skew,
            abandon_after: config.tusd.abandon_after,
        };
        let backend = publisher::S3Backend::new(store, runtime.handle().clone(), stale);
        Ok(Pending {
            location: format!("s3://{}/{}", s3.bucket, s3.upload_prefix),
            publisher: Publisher::new(Arc::new(backend)),
            _runtime: Some(runtime),
        })
    }
}

fn finalize_pending(config: &Config) -> ExitCode {
    // On S3 before the self-test's requests (nothing to verify uploads with);
    // on fs after the roots, as before.
    if config.upload.secrets.is_empty() && config.storage.s3.is_some() {
        return ConfigError::exit(&ConfigError::no_secret("upload", "UPLOAD"));
    }
    let pending = match Pending::of(config) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if config.upload.secrets.is_empty() {
        return ConfigError::exit(&ConfigError::no_secret("upload", "UPLOAD"));
    }
    let upload_dir = pending.location.clone();
    let publisher = pending.publisher;
    let _runtime = pending._runtime;
    let found = publisher.find();
    match found.swept {
        Ok(0) => {}
        Ok(n) => println!("removed {n} temporary files left by interrupted moves"),
        Err(e) => eprintln!("warning: cannot sweep the temporary directory: {e}"),
    }
    let scan = match found.scan {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot scan {upload_dir}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gate = Gate {
        upload: &config.upload,
        storage: &config.storage,
        upload_ids: config.tusd.upload_ids,
    };
    let sink = match config
        .events
        .as_ref()
        .map(crate::events::sink_for_cli)
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let publisher = publisher.with_events(sink);
    let (mut moved, mut kept, mut failed) = (0, 0, 0);
    for skipped in &scan.skipped {
        let why = match &skipped.reason {
            finalize::SkipReason::Refused => {
                "Refused (refused for good earlier: remove its .refused file to re-admit it, see docs/upload-lifecycle.md)"
                    .to_string()
            }
            other => format!("{other:?}"),
        };
        println!("skipped {}: {why}", skipped.info_path.display());
    }
    for p in &scan.finished {
        let plan = match publisher::plan(p, gate) {
            Ok(plan) => plan,
            Err(verdict) => {
                let why = match &verdict {
                    tusd::NotPlanned::Keep(r) => format!("{} ({})", r.reason().as_str(), r.message()),
                    tusd::NotPlanned::Skip(r) => r.as_str().to_string(),
                };
                println!("kept {}: {why}", p.id);
                kept += 1;
                publisher.keep(p, &verdict, &config.storage);
                continue;
            }
        };
        match publisher.publish(&plan, &finalize::Cancel::new()) {
            Report::Held(_) => {
                println!(
                    "failed {}: published at {}, but its event could not be committed; the upload stays for the next run",
                    p.id,
                    plan.destination().display()
                );
                failed += 1;
            }
            Report::Published(done) => {
                println!(
                    "moved {} -> {} ({}, {} bytes)",
                    p.id,
                    plan.destination().display(),
                    done.method.as_str(),
                    done.bytes
                );
                moved += 1;
            }
            Report::NotPublished(e) if e.is_conflict() => {
                println!(
                    "kept {}: {} (destination exists; the upload stays)",
                    p.id,
                    e.as_str()
                );
                kept += 1;
            }
            Report::NotPublished(e) => {
                println!("failed {}: {} ({e})", p.id, e.as_str());
                failed += 1;
            }
        }
    }
    println!(
        "{moved} moved, {kept} kept, {failed} failed, {} skipped, {} stale info files",
        scan.skipped.len(),
        scan.stale.len()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn healthcheck(listen: SocketAddr, ready: bool) -> ExitCode {
    let path = if ready { "/readyz" } else { "/healthz" };
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    match http_status(addr, path) {
        Ok(200) => {
            println!("http://{addr}{path}: 200");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("http://{addr}{path}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("http://{addr}{path}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of a `GET path` on `addr`, with short timeouts: a health check
/// must not hang.
fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    use std::io::{Error, ErrorKind};
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    // "HTTP/1.1 200 OK": the status is bytes 9..12.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.strip_prefix("HTTP/1.1 "))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "not an HTTP/1.1 response"))
}

fn sign_link(config: &Config, path: &str, expiry: &Expiry) -> ExitCode {
    let Some(secret) = config.link.secrets.newest() else {
        return ConfigError::exit(&ConfigError::no_secret("link", "LINK"));
    };
    let encoded = encode_path(path);
    // The link only works if nginx derives the very same $uri from it.
    let same = nginx_uri::parse_request_target(encoded.as_bytes(), config.link.merge_slashes)
        .map(|t| t.uri == path.as_bytes())
        .unwrap_or(false);
    if !same {
        eprintln!(
            "error: {path:?} is not a path nginx keeps as-is (it must start with '/' and have no '//', '.' or '..' segments): nginx would hash a different $uri"
        );
        return ExitCode::from(2);
    }
    let expires = expiry.at(SystemClock.now());
    if expires <= 0 {
        eprintln!("error: expires must be positive (nginx rejects 0 and negative expiries)");
        return ExitCode::from(2);
    }
    let md5 = link::sign(secret.expose(), path.as_bytes(), expires);
    println!("{encoded}?md5={md5}&expires={expires}");
    ExitCode::SUCCESS
}

fn verify_link(config: &Config, target: &str, now: Option<i64>) -> ExitCode {
    if config.link.secrets.is_empty() {
        return ConfigError::exit(&ConfigError::no_secret("link", "LINK"));
    }
    let now = now.unwrap_or_else(|| SystemClock.now());
    match link::verify_request_target(
        &config.link.secrets,
        target.as_bytes(),
        config.link.merge_slashes,
        now,
    ) {
        Ok(v) => {
            println!(
                "valid: $uri {:?}, expires {} (in {} s)",
                String::from_utf8_lossy(v.uri()),
                v.expires(),
                v.expires() - now
            );
            ExitCode::SUCCESS
        }
        Err(d) => {
            println!("denied: {d}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
