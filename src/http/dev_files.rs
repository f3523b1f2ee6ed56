//! `serve --dev` only: downloads of private assets straight from the daemon,
//! so a newcomer can follow a signed link with nothing but the daemon and
//! tusd running (production downloads go through nginx, which asks `/auth`).
//!
//! The request target is decided by [`auth::decide`] exactly as nginx's
//! `auth_request` would have it decided (`X-Original-URI` = the raw target),
//! logged and counted as an auth decision; an allowed link's `$uri` is read
//! below `[storage] root` with the mover's confinement
//! ([`crate::finalize::Roots::read_published`]: no symlink, plain names), up
//! to [`MAX_BYTES`]. A refusal is the `/auth` answer itself (403 and
//! `X-Assetgate-Reason`). Not routed at all without `--dev`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::http::auth::{self, AuthOutcome};
use crate::http::respond::{text, Synthetic};
use crate::http::{AppState, Resp};

/// The largest file served (dev mode is for a look, not for transfers).
pub const MAX_BYTES: u64 = 16 << 20;

/// Whether `path` is one `--dev` serves: below `/{private_prefix}/` (the
/// running configuration's: the prefix is reloadable).
pub fn serves(state: &AppState, path: &str) -> bool {
    state.dev && below_private(&state.current().storage.private_prefix, path.as_bytes()).is_some()
}

/// `path` as text when it is below `/{prefix}/`, else `None`. Checked on the
/// raw request path by [`serves`] and again on the path the link was verified
/// for (decoded and normalised as nginx does), which is the one read: a raw
/// `/private/%2e%2e/public/x` is routed here but reads nothing outside the
/// prefix. A path that is not UTF-8 is refused rather than read lossily (two
/// links would name one file).
fn below_private<'a>(prefix: &str, path: &'a [u8]) -> Option<&'a str> {
    let path = std::str::from_utf8(path).ok()?;
    path.strip_prefix('/')?
        .strip_prefix(prefix)?
        .starts_with('/')
        .then_some(path)
}

/// Answers one `GET`/`HEAD` of a private asset in dev mode.
pub async fn handle(state: &Arc<AppState>, req: Request<Incoming>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Synthetic::method_not_allowed("GET, HEAD").into();
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(&target) {
        Ok(v) => {
            headers.insert(auth::ORIGINAL_URI, v);
        }
        Err(_) => return Synthetic::not_found().into(),
    }
    let cfg = state.current_owned();
    let outcome = auth::decide(&cfg, &state.shared, &headers, state.clock.now());
    auth::record(&outcome, &state.metrics);
    let uri = match &outcome {
        AuthOutcome::Allow(v) => match below_private(&cfg.storage.private_prefix, v.uri()) {
            Some(uri) => uri.to_owned(),
            None => {
                tracing::info!(
                    endpoint = "auth",
                    dev = true,
                    "dev download: the link's path is not below the private prefix once decoded"
                );
                return Synthetic::not_found().into();
            }
        },
        _ => return auth::response(&outcome, req.method()),
    };
    let Some(roots) = state.finalizer.roots().cloned() else {
        return Synthetic::not_found().into();
    };
    let relative = uri.trim_start_matches('/').to_owned();
    let read =
        tokio::task::spawn_blocking(move || roots.read_published(Path::new(&relative), MAX_BYTES)).await;
    match read {
        Ok(Ok(bytes)) => {
            let len = bytes.len();
            let body = if req.method() == Method::HEAD {
                Bytes::new()
            } else {
                Bytes::from(bytes)
            };
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::OK;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            // Never rendered, whatever the bytes are: as the shipped nginx
            // locations do for active types (served as signed).
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
            r
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            tracing::info!(
                endpoint = "auth",
                dev = true,
                max = MAX_BYTES,
                "dev download: the asset is over the dev cap"
            );
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "larger than serve --dev's download cap ({MAX_BYTES} bytes); nginx serves it in production\n"
                ),
            )
        }
        Ok(Err(e)) => {
            tracing::info!(endpoint = "auth", dev = true, error = %e, "dev download: the asset cannot be read");
            Synthetic::not_found().into()
        }
        Err(e) => {
            tracing::error!(endpoint = "auth", dev = true, error = %e, "dev download task failed");
            Synthetic::internal().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::below_private;

    #[test]
    fn only_paths_below_the_private_prefix_are_read() {
        assert_eq!(
            below_private("private", b"/private/a.txt"),
            Some("/private/a.txt")
        );
        assert_eq!(
            below_private("private", b"/private/dev/a b.txt"),
            Some("/private/dev/a b.txt")
        );
        // What `/private/%2e%2e/public/x` decodes to, and other neighbours.
        assert_eq!(below_private("private", b"/public/x"), None);
        assert_eq!(below_private("private", b"/privatex/a"), None);
        assert_eq!(below_private("private", b"/private"), None);
        assert_eq!(below_private("private", b"private/a"), None);
        // Not UTF-8: refused, not read as U+FFFD.
        assert_eq!(below_private("private", b"/private/a\xff"), None);
        assert_eq!(
            below_private("assets-private", b"/assets-private/a"),
            Some("/assets-private/a")
        );
    }
}
