//! `[events]`: where events go, how they are signed, how long they are retried,
//! and how much the outbox may hold. Validated once, with the rest of the
//! configuration (`crate::config`): any problem names its key, exit 64.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::human::Human;
use super::read::read_secret_file;
use super::show;
use crate::events::sign::{WebhookSecret, WebhookSecrets};

/// The validated `[events]` section. `Serialize` is its part of
/// `check-config`: secrets redacted, the URL reduced to its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventsConfig {
    /// The receiver (`http://host:port/path`).
    #[serde(serialize_with = "origin_only")]
    pub url: Endpoint,
    /// Signing secrets, newest first: each signs every delivery (rotation).
    #[serde(serialize_with = "redacted")]
    pub secrets: WebhookSecrets,
    /// The outbox directory (absolute).
    pub dir: PathBuf,
    /// One delivery attempt: connect, send, status line and body.
    #[serde(serialize_with = "show::duration")]
    pub timeout: Duration,
    /// How long an event is retried (from its creation, or from `events retry`)
    /// before it is kept as dead.
    #[serde(serialize_with = "show::duration")]
    pub max_age: Duration,
    /// Deliveries in flight at once.
    #[serde(serialize_with = "show::count")]
    pub concurrency: usize,
    /// Backoff before the second attempt; doubles per attempt.
    #[serde(serialize_with = "show::duration")]
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    #[serde(serialize_with = "show::duration")]
    pub max_backoff: Duration,
    /// Pending + dead events the outbox holds at most; beyond, new events are
    /// refused (and the mover keeps the upload's source, so a later pass
    /// produces the event once there is room).
    #[serde(serialize_with = "show::u64")]
    pub max_events: u64,
    /// How long the id of a delivered event is remembered (a duplicate
    /// post-finish or reconcile pass within it sends nothing).
    #[serde(serialize_with = "show::duration")]
    pub keep_delivered: Duration,
}

/// `"http://app:8000/…"`: the path and query may carry an application's token.
fn origin_only<S: serde::Serializer>(url: &Endpoint, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}/…", url.origin()))
}

/// `["<redacted: whsec_, 32 bytes>", …]`.
fn redacted<S: serde::Serializer>(set: &WebhookSecrets, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        set.iter()
            .map(|x| format!("<redacted: whsec_, {} bytes>", x.len())),
    )
}

/// A parsed `http://` URL: what the client connects to, and what the logs may
/// show (scheme, host and port; never the path or query, which may carry an
/// application's token).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    uri: http::Uri,
}

impl Endpoint {
    /// The full URI (for the client only).
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// `http://host:port`, for logs.
    pub fn origin(&self) -> String {
        let a = self.uri.authority().map(|a| a.as_str()).unwrap_or("");
        format!("http://{a}")
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({}/…)", self.origin())
    }
}

/// `[events]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawEvents {
    url: Option<String>,
    secret: Option<String>,
    secrets: Option<Vec<String>>,
    dir: Option<PathBuf>,
    timeout: Human,
    max_age: Human,
    concurrency: u64,
    initial_backoff: Human,
    max_backoff: Human,
    max_events: u64,
    keep_delivered: Human,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents {
            url: None,
            secret: None,
            secrets: None,
            dir: None,
            timeout: Human::Int(10),
            max_age: Human::Text("3d".into()),
            concurrency: 4,
            initial_backoff: Human::Int(5),
            max_backoff: Human::Text("10m".into()),
            max_events: 100_000,
            keep_delivered: Human::Text("7d".into()),
        }
    }
}

/// `ASSETGATE_EVENTS_SECRET` (one) or `ASSETGATE_EVENTS_SECRET_FILE` (one per
/// line; also accepted as `ASSETGATE_EVENTS__SECRET_FILE`), like the link and
/// upload secrets. `Some` replaces the file's `secret`/`secrets`.
pub(crate) fn secrets_from_env(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let one = get("ASSETGATE_EVENTS_SECRET");
    let file_vars: Vec<(&str, String)> = ["ASSETGATE_EVENTS_SECRET_FILE", "ASSETGATE_EVENTS__SECRET_FILE"]
        .into_iter()
        .filter_map(|n| get(n).map(|v| (n, v)))
        .collect();
    match (one, file_vars.as_slice()) {
        (None, []) => Ok(None),
        (Some(v), []) => Ok(Some(vec![v])),
        (None, [(name, path)]) => read_secret_file(std::path::Path::new(path))
            .map(Some)
            .map_err(|e| ConfigError::new(format!("events.secrets ({name})"), e)),
        _ => Err(ConfigError::new(
            "events.secrets",
            "more than one of ASSETGATE_EVENTS_SECRET, ASSETGATE_EVENTS_SECRET_FILE, ASSETGATE_EVENTS__SECRET_FILE is set; set only one",
        )),
    }
}

/// Validates `[events]`. No value of a `secret`/`secrets` key, and no part of
/// the URL, ever appears in an error.
pub(crate) fn validate(
    raw: RawEvents,
    env_secrets: Option<Vec<String>>,
) -> Result<EventsConfig, ConfigError> {
    let url = endpoint(raw.url.as_deref())?;
    let (key, list) = match (env_secrets, raw.secret, raw.secrets) {
        (Some(env), _, _) => ("events.secrets", env),
        (None, Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "events.secret",
                "set either secret or secrets, not both",
            ))
        }
        (None, Some(one), None) => ("events.secret", vec![one]),
        (None, None, Some(many)) => ("events.secrets", many),
        (None, None, None) => return Err(ConfigError::new(
            "events.secret",
            "missing: a \"whsec_…\" secret (or set ASSETGATE_EVENTS_SECRET / ASSETGATE_EVENTS_SECRET_FILE)",
        )),
    };
    if list.is_empty() {
        return Err(ConfigError::new(key, "no secret in the list"));
    }
    let mut secrets = Vec::with_capacity(list.len());
    let single = key == "events.secret";
    for (i, s) in list.into_iter().enumerate() {
        let k = if single {
            key.to_string()
        } else {
            format!("{key}[{i}]")
        };
        secrets.push(WebhookSecret::parse(&s).map_err(|e| ConfigError::new(k, e.to_string()))?);
    }
    let dir = match raw.dir {
        Some(d) if d.is_absolute() => d,
        Some(_) => return Err(ConfigError::new("events.dir", "must be an absolute path")),
        None => {
            return Err(ConfigError::new(
                "events.dir",
                "missing: the outbox directory (e.g. \"/var/lib/assetgate/events\")",
            ))
        }
    };
    let timeout = raw.timeout.duration("events.timeout")?;
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(300) {
        return Err(ConfigError::new(
            "events.timeout",
            "must be between 100ms and 300 seconds",
        ));
    }
    let max_age = raw.max_age.duration("events.max_age")?;
    if max_age.is_zero() {
        return Err(ConfigError::new("events.max_age", "must be more than 0"));
    }
    if !(1..=256).contains(&raw.concurrency) {
        return Err(ConfigError::new(
            "events.concurrency",
            "must be between 1 and 256",
        ));
    }
    let initial_backoff = raw.initial_backoff.duration("events.initial_backoff")?;
    let max_backoff = raw.max_backoff.duration("events.max_backoff")?;
    if initial_backoff < Duration::from_millis(10) {
        return Err(ConfigError::new(
            "events.initial_backoff",
            "must be at least 10ms",
        ));
    }
    if max_backoff < initial_backoff {
        return Err(ConfigError::new(
            "events.max_backoff",
            "must be at least events.initial_backoff",
        ));
    }
    if raw.max_events == 0 {
        return Err(ConfigError::new("events.max_events", "must be at least 1"));
    }
    Ok(EventsConfig {
        url,
        secrets: WebhookSecrets::new(secrets),
        dir,
        timeout,
        max_age,
        concurrency: raw.concurrency as usize,
        initial_backoff,
        max_backoff,
        max_events: raw.max_events,
        keep_delivered: raw.keep_delivered.duration("events.keep_delivered")?,
    })
}

/// The receiver URL: `http://host[:port]/path`. The value is never echoed
/// (an application may put a token in its path or query).
fn endpoint(url: Option<&str>) -> Result<Endpoint, ConfigError> {
    let key = "events.url";
    let Some(url) = url else {
        return Err(ConfigError::new(
            key,
            "missing: the application's receiver, e.g. \"http://app:8000/hooks/assets\"",
        ));
    };
    if !url.contains("://") {
        return Err(ConfigError::new(
            key,
            "no scheme: write it as http://host:port/path (value not shown)",
        ));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ConfigError::new(key, "not a URL (value not shown)"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(ConfigError::new(
                key,
                "https is not supported: deliver over http on the internal network (or through a local TLS proxy)",
            ))
        }
        Some(_) => return Err(ConfigError::new(key, "the scheme must be http://")),
        None => {
            return Err(ConfigError::new(
                key,
                "no scheme: write it as http://host:port/path (value not shown)",
            ))
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(ConfigError::new(key, "no host"));
    };
    if authority.as_str().contains('@') {
        return Err(ConfigError::new(
            key,
            "credentials in the URL are not supported (the signature authenticates assetgate)",
        ));
    }
    if authority.host().is_empty() {
        return Err(ConfigError::new(key, "no host"));
    }
    Ok(Endpoint { uri })
}

impl EventsConfig {
    /// The `[events]` part of `check-config` on its own (the whole
    /// configuration serializes it as part of [`crate::config::Config`]).
    pub fn redacted_toml(&self) -> String {
        #[derive(Serialize)]
        struct Section<'a> {
            events: &'a EventsConfig,
        }
        toml::to_string(&Section { events: self })
            .unwrap_or_else(|e| format!("# [events] cannot be shown as TOML: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_from, Sources};
    use std::io::Write;

    const GOOD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn load(text: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, crate::config::ConfigError> {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load_from(
            &Sources {
                file: Some(f.path().to_path_buf()),
            },
            &env,
        )
    }

    fn section(extra: &str) -> String {
        format!(
            "[events]\nurl = \"http://app:8000/hooks/assets\"\ndir = \"/var/lib/assetgate/events\"\n{extra}"
        )
    }

    #[test]
    fn no_section_no_events() {
        assert!(load("", &[]).unwrap().events.is_none());
    }

    #[test]
    fn defaults_and_units() {
        let c = load(
            &section(&format!("secret = \"{GOOD}\"\ninitial_backoff = \"50ms\"\n")),
            &[],
        )
        .unwrap()
        .events
        .unwrap();
        assert_eq!(c.secrets.len(), 1);
        assert_eq!(c.initial_backoff.as_millis(), 50);
        assert_eq!(c.max_age.as_secs(), 3 * 86_400);
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.url.origin(), "http://app:8000");
        let shown = c.redacted_toml();
        assert!(
            shown.contains("max_age = \"259200s\"\n") && shown.contains("initial_backoff = \"50ms\""),
            "{shown}"
        );
        assert!(
            !shown.contains("MfKQ") && !shown.contains("/hooks/assets"),
            "{shown}"
        );
    }

    #[test]
    fn env_secret_replaces_the_file_and_errors_never_show_a_secret() {
        let c = load(
            &section("secrets = [\"whsec_bm90LWEtd2hzZWMtYnV0LWxvbmctZW5vdWdo\"]\n"),
            &[("ASSETGATE_EVENTS_SECRET", GOOD)],
        )
        .unwrap();
        assert_eq!(c.events.unwrap().secrets.len(), 1);
        let e = load(&section("secret = \"not-a-whsec-secret-value\"\n"), &[]).unwrap_err();
        assert_eq!(e.key, "events.secret");
        assert!(!e.to_string().contains("not-a-whsec"), "{e}");
        let e = load(
            &section(&format!("secrets = [\"{GOOD}\", \"whsec_!!!notbase64!!!\"]\n")),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "events.secrets[1]");
        assert!(!e.to_string().contains("notbase64"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = [
            ("url = \"app:8000/hooks\"\n", "events.url"),
            ("url = \"https://app/hooks\"\n", "events.url"),
            ("url = \"http://user:pw@app/hooks\"\n", "events.url"),
            ("dir = \"relative/dir\"\n", "events.dir"),
            ("concurrency = 0\n", "events.concurrency"),
            ("max_backoff = \"1ms\"\n", "events.max_backoff"),
            ("timeout = \"1h\"\n", "events.timeout"),
            ("max_events = 0\n", "events.max_events"),
        ];
        for (line, key) in bad {
            let name = line.split(" = ").next().unwrap();
            let mut lines = vec!["[events]".to_string(), format!("secret = \"{GOOD}\"")];
            for (k, v) in [("url", "\"http://app/h\""), ("dir", "\"/x\"")] {
                if k != name {
                    lines.push(format!("{k} = {v}"));
                }
            }
            lines.push(line.trim_end().to_string());
            let e = load(&lines.join("\n"), &[]).unwrap_err();
            assert_eq!(e.key, key, "{line}: {e}");
            if line.contains("app:8000") {
                assert!(e.message.starts_with("no scheme"), "{e}");
            }
            assert_eq!(e.to_string().lines().count(), 1);
            assert!(!e.to_string().contains("pw@"), "{e}");
        }
        let e = load(&section(""), &[]).unwrap_err();
        assert_eq!(e.key, "events.secret");
    }
}
