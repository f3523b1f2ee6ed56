//! Link signing, test side (straight from the md-5 crate).

use super::*;

pub(crate) const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// A secret assetgate does not know.
pub(crate) const WRONG_SECRET: &str = "wrong-secret-not-configured-0123";

pub(crate) fn digest(expires: &[u8], uri: &[u8], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(expires);
    h.update(uri);
    h.update(b" ");
    h.update(secret);
    h.finalize().into()
}

/// nginx's `md5` argument for `$uri` and the raw `expires` text.
pub(crate) fn link_md5(expires: &[u8], uri: &[u8], secret: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(digest(expires, uri, secret))
        .into_bytes()
}

pub(crate) fn b64_index(c: u8) -> usize {
    B64URL.iter().position(|&a| a == c).unwrap()
}

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
