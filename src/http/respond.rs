//! The responses the gate writes itself, in one place: the ones it makes when
//! it has no decision of a core to give ([`Synthetic`]: an error, a limit,
//! an unknown path), and the few shapes every endpoint shares (nginx's
//! `auth_request` answers, plain text, JSON).
//!
//! [`Synthetic`] follows linkerd2-proxy's `SyntheticHttpResponse`: one type,
//! named constructors (`busy()`, `deadline()`, `too_large(max)`, ...), and
//! per server one rescue that turns its errors into one of them: `/tusd`'s
//! `Failure` ([`crate::http::hooks`]), the admin API's `AdminError`
//! ([`crate::http::admin`]), the outbox socket's `SocketError`
//! ([`crate::http::events_socket`]); the main listener's routes answer an
//! unknown path or method with one directly ([`crate::http::route`]).
//! Logging and counting stay with each rescue's caller, never in here.
//!
//! The bodies come in the shapes their clients read:
//! - `{"error":{"code":…,"message":…}}`, `application/json`: the tus clients'
//!   shape, for `/tusd`'s failures and for every limit's answer on every
//!   listener (tusd passes a hook's answer on to its client);
//! - `{"error":…}`, `application/json`: the admin APIs' (the CLI shows `error`);
//! - plain text, `text/plain; charset=utf-8`: the main listener's 404 and 405.
//!
//! A limit's answer closes the connection (`Connection: close`: the rest of a
//! slow body is never read), and a 503 says when to retry (`Retry-After: 1`).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::tusd::Reason;

/// Response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// `X-Assetgate-Reason`: why nginx's `auth_request` got a 403.
pub const REASON_HEADER: &str = "x-assetgate-reason";

/// A response the gate makes itself (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Synthetic {
    status: StatusCode,
    body: Body,
    /// A limit's answer: `Connection: close`, and `Retry-After: 1` on a 503.
    close: bool,
    /// `Allow` of a 405.
    allow: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `{"error":{"code":…,"message":…}}`.
    Coded {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// `{"error":…}`.
    Admin(Cow<'static, str>),
    /// Plain text.
    Text(&'static str),
}

impl Synthetic {
    fn coded(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Synthetic {
            status,
            body: Body::Coded {
                code,
                message: message.into(),
            },
            close: false,
            allow: None,
        }
    }

    fn limit(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Synthetic {
            close: true,
            ..Self::coded(status, code, message)
        }
    }

    // Every listener's limits (crate::http::limits).

    /// 503 `busy`, closed: `/tusd`'s budget is full of bodies still arriving.
    pub fn busy() -> Self {
        Self::limit(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many hook requests at once (server.max_tusd_requests)",
        )
    }

    /// 503 `request_timeout`, closed: the request took longer than
    /// `server.request_timeout`.
    pub fn deadline() -> Self {
        Self::limit(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            "the request took longer than server.request_timeout",
        )
    }

    /// 408 `body_timeout`, closed: the body did not arrive within
    /// `server.body_read_timeout`.
    pub fn body_timeout() -> Self {
        Self::limit(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive within server.body_read_timeout",
        )
    }

    /// 408 `body_timeout`, closed: a `/tusd` body still arriving past the
    /// grace was cut to make room for a newer request.
    pub fn cut() -> Self {
        Self::limit(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body was still arriving when server.max_tusd_requests was full: closed to make room (tusd sends a hook's body at once)",
        )
    }

    // `/tusd`: the hooks' reason codes.

    /// 413 `bad_hook`: the hook body is over `server.max_body_bytes` (`max`).
    pub fn too_large(max: u64) -> Self {
        Self::coded(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BadHook.as_str(),
            format!("hook body larger than server.max_body_bytes ({max} bytes)"),
        )
    }

    /// 400 `bad_hook`: the hook body could not be read.
    pub fn unreadable() -> Self {
        Self::coded(
            StatusCode::BAD_REQUEST,
            Reason::BadHook.as_str(),
            "the request body could not be read",
        )
    }

    /// 500 `internal`: the hook could not be decided.
    pub fn internal() -> Self {
        Self::coded(
            StatusCode::INTERNAL_SERVER_ERROR,
            Reason::Internal.as_str(),
            "the hook could not be decided",
        )
    }

    // The main listener's routes.

    /// 405 with the methods the path answers (`Allow`).
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Synthetic {
            allow: Some(allow),
            ..Self::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
    }

    /// 404: no endpoint at this path.
    pub fn not_found() -> Self {
        Self::text(StatusCode::NOT_FOUND, "not found\n")
    }

    fn text(status: StatusCode, text: &'static str) -> Self {
        Synthetic {
            status,
            body: Body::Text(text),
            close: false,
            allow: None,
        }
    }

    // The admin APIs.

    /// An admin API's error: `status`, `{"error": message}`.
    pub fn admin(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Synthetic {
            status,
            body: Body::Admin(message.into()),
            close: false,
            allow: None,
        }
    }

    /// The response on the wire.
    pub fn into_response(self) -> Resp {
        let mut r = match self.body {
            Body::Coded { code, message } => json(
                self.status,
                &serde_json::json!({"error": {"code": code, "message": message}}),
            ),
            Body::Admin(message) => json(self.status, &serde_json::json!({ "error": message })),
            Body::Text(t) => text(self.status, t),
        };
        let h = r.headers_mut();
        if let Some(allow) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
        }
        r
    }
}

impl From<Synthetic> for Resp {
    fn from(s: Synthetic) -> Resp {
        s.into_response()
    }
}

/// A plain-text response (`text/plain; charset=utf-8`).
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response (`application/json`).
pub fn json(status: StatusCode, v: &impl Serialize) -> Resp {
    let body = serde_json::to_vec(v).expect("JSON values serialise");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// nginx `auth_request`: let the request through (204, no body: keepalive
/// to the gate needs body-less answers).
pub fn allowed() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// nginx `auth_request`: refuse the request (403, `X-Assetgate-Reason:
/// <reason>`, `Content-Length: 0`; nginx only understands 2xx, 401 and 403
/// from an auth subrequest).
pub fn refused(reason: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::FORBIDDEN;
    let h = r.headers_mut();
    h.insert(REASON_HEADER, HeaderValue::from_static(reason));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// nginx `auth_request`: a deployment fault (500, failed closed; nginx gives
/// its client a 500). `body` is for people (curl); nginx discards it.
pub fn fault(body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Status line, headers in the order hyper writes them, body.
    async fn wire(r: Resp) -> String {
        let mut s = format!("{}\n", r.status());
        for (k, v) in r.headers() {
            s += &format!("{k}: {}\n", v.to_str().unwrap());
        }
        let body = r.into_body().collect().await.unwrap().to_bytes();
        s + "\n" + &String::from_utf8_lossy(&body)
    }

    /// Every named constructor's bytes, as they were before the constructors
    /// existed (the helpers they replace: `json_error`, `limit_response`,
    /// `method_not_allowed`, `text`, the admin APIs' `error`, the inline
    /// `/auth` and `/session` answers): clients and tests match on them.
    #[tokio::test]
    async fn each_response_keeps_its_bytes() {
        let json = "content-type: application/json\n";
        let closed = "content-type: application/json\nconnection: close\n";
        let retry = "content-type: application/json\nconnection: close\nretry-after: 1\n";
        let text = "content-type: text/plain; charset=utf-8\n";
        let cases: Vec<(Resp, String)> = vec![
            (
                Synthetic::busy().into(),
                format!("503 Service Unavailable\n{retry}\n{{\"error\":{{\"code\":\"busy\",\"message\":\"too many hook requests at once (server.max_tusd_requests)\"}}}}"),
            ),
            (
                Synthetic::deadline().into(),
                format!("503 Service Unavailable\n{retry}\n{{\"error\":{{\"code\":\"request_timeout\",\"message\":\"the request took longer than server.request_timeout\"}}}}"),
            ),
            (
                Synthetic::body_timeout().into(),
                format!("408 Request Timeout\n{closed}\n{{\"error\":{{\"code\":\"body_timeout\",\"message\":\"the request body did not arrive within server.body_read_timeout\"}}}}"),
            ),
            (
                Synthetic::cut().into(),
                format!("408 Request Timeout\n{closed}\n{{\"error\":{{\"code\":\"body_timeout\",\"message\":\"the request body was still arriving when server.max_tusd_requests was full: closed to make room (tusd sends a hook's body at once)\"}}}}"),
            ),
            (
                Synthetic::too_large(1_048_576).into(),
                format!("413 Payload Too Large\n{json}\n{{\"error\":{{\"code\":\"bad_hook\",\"message\":\"hook body larger than server.max_body_bytes (1048576 bytes)\"}}}}"),
            ),
            (
                Synthetic::unreadable().into(),
                format!("400 Bad Request\n{json}\n{{\"error\":{{\"code\":\"bad_hook\",\"message\":\"the request body could not be read\"}}}}"),
            ),
            (
                Synthetic::internal().into(),
                format!("500 Internal Server Error\n{json}\n{{\"error\":{{\"code\":\"internal\",\"message\":\"the hook could not be decided\"}}}}"),
            ),
            (
                Synthetic::method_not_allowed("GET, HEAD").into(),
                format!("405 Method Not Allowed\n{text}allow: GET, HEAD\n\nmethod not allowed\n"),
            ),
            (
                Synthetic::method_not_allowed("POST").into(),
                format!("405 Method Not Allowed\n{text}allow: POST\n\nmethod not allowed\n"),
            ),
            (Synthetic::not_found().into(), format!("404 Not Found\n{text}\nnot found\n")),
            (
                Synthetic::admin(StatusCode::NOT_FOUND, "not found").into(),
                format!("404 Not Found\n{json}\n{{\"error\":\"not found\"}}"),
            ),
            (
                Synthetic::admin(StatusCode::BAD_REQUEST, "expected {\"kind\":…,\"value\":…}").into(),
                format!("400 Bad Request\n{json}\n{{\"error\":\"expected {{\\\"kind\\\":…,\\\"value\\\":…}}\"}}"),
            ),
            (
                self::text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
                format!("503 Service Unavailable\n{text}\ndraining\n"),
            ),
            (
                self::json(StatusCode::CREATED, &serde_json::json!({ "result": "enqueued" })),
                format!("201 Created\n{json}\n{{\"result\":\"enqueued\"}}"),
            ),
            (allowed(), "204 No Content\n\n".into()),
            (
                refused("expired"),
                "403 Forbidden\nx-assetgate-reason: expired\ncontent-length: 0\n\n".into(),
            ),
            (fault("see the log\n"), "500 Internal Server Error\n\nsee the log\n".into()),
        ];
        for (resp, want) in cases {
            assert_eq!(wire(resp).await, want);
        }
    }
}
