//! The responses the gate makes itself, when it has no decision of a core to
//! give: the hooks' JSON error shape, a limit's answer, plain text.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

/// Response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// The JSON error every HTTP adapter answers with when it has no decision of
/// its core to give: `{"error":{"code":…,"message":…}}` (the tusd clients'
/// shape).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Resp {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The answer of a limit (408 for a body too slow, 503 for a full `/tusd`
/// budget or a request over its deadline), in the hooks' JSON error shape,
/// with `Connection: close`: the connection is not reused.
pub fn limit_response(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut r = json_error(status, code, message);
    let h = r.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// 405 with the methods the path allows.
pub fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
