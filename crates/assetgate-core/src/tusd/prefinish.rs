//! pre-finish (optional): do the file's leading bytes match its declared type?
//!
//! Only types with a well-known signature are checked (PNG, JPEG, GIF, WebP,
//! BMP, TIFF, ISO-BMFF (MP4/AVIF/HEIC), PDF, ZIP and ZIP-based documents,
//! GZIP, BZIP2, 7z, tar). Any other declared type passes: there is nothing to
//! compare against. An empty file never matches a signature.
//!
//! tusd v2 calls pre-finish after the data store has finished the upload, only
//! to shape the client's last response, and fires post-finish regardless. A
//! mismatch answered here tells the client (415 `content_mismatch`); what keeps
//! the file out of the asset tree is the mover, which runs [`check`] itself on
//! the file before publishing it (the plan carries the declared type when
//! `check_content` is on). tusd v2.9.1 fires pre-finish for each partial
//! upload (skipped here: a part's bytes are not the file's start) and for the
//! final upload inside the POST that creates it (seen on a real run:
//! tests/e2e_tusd.rs); tusd v1.13.0 fires no post-finish after a failed
//! pre-finish; rustus has no pre-finish hook; `finalize-pending` and the
//! reconciler run no hook at all.

use super::gate::StoreUnavailable;
use super::protocol::Upload;
use super::{Gate, ReasonCode, Rejection, Verdict};
use crate::policy;
use crate::token::upload::verify_signature_ignoring_expiry;

/// How many leading bytes the check looks at (PDF headers may sit anywhere in
/// the first KiB; tar's magic is at offset 257).
pub const SNIFF_BYTES: usize = 1024;

type Matcher = fn(&[u8]) -> bool;

/// Declared type (lower-case essence) → signature. ZIP-based formats are
/// matched by prefix below.
const SIGNATURES: &[(&str, &str, Matcher)] = &[
    ("image/png", "PNG", |b| b.starts_with(b"\x89PNG\r\n\x1a\n")),
    ("image/jpeg", "JPEG", is_jpeg),
    ("image/jpg", "JPEG", is_jpeg),
    ("image/pjpeg", "JPEG", is_jpeg),
    ("image/gif", "GIF", |b| {
        b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")
    }),
    ("image/webp", "WebP", |b| {
        b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP"
    }),
    ("image/bmp", "BMP", |b| b.starts_with(b"BM")),
    ("image/tiff", "TIFF", |b| {
        b.starts_with(b"II*\0") || b.starts_with(b"MM\0*")
    }),
    ("image/avif", "ISO-BMFF", is_bmff),
    ("image/heic", "ISO-BMFF", is_bmff),
    ("image/heif", "ISO-BMFF", is_bmff),
    ("video/mp4", "ISO-BMFF", is_bmff),
    ("video/quicktime", "ISO-BMFF", is_bmff),
    ("application/pdf", "PDF", |b| find(b, b"%PDF-")),
    ("application/zip", "ZIP", is_zip),
    ("application/x-zip-compressed", "ZIP", is_zip),
    ("application/epub+zip", "ZIP", is_zip),
    ("application/java-archive", "ZIP", is_zip),
    ("application/gzip", "GZIP", is_gzip),
    ("application/x-gzip", "GZIP", is_gzip),
    ("application/x-bzip2", "BZIP2", |b| b.starts_with(b"BZh")),
    ("application/x-7z-compressed", "7z", |b| {
        b.starts_with(b"7z\xbc\xaf\x27\x1c")
    }),
    ("application/x-tar", "tar", |b| {
        b.len() >= 262 && &b[257..262] == b"ustar"
    }),
];

/// Office Open XML and OpenDocument files are ZIP archives.
const ZIP_PREFIXES: &[&str] = &[
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
];

fn is_jpeg(b: &[u8]) -> bool {
    b.starts_with(b"\xff\xd8\xff")
}

fn is_bmff(b: &[u8]) -> bool {
    b.len() >= 8 && &b[4..8] == b"ftyp"
}

fn is_zip(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") || b.starts_with(b"PK\x07\x08")
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(b"\x1f\x8b")
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The signature family expected for a declared content type, if it has one.
pub fn expected_signature(declared: &str) -> Option<&'static str> {
    signature(declared).map(|(name, _)| name)
}

fn signature(declared: &str) -> Option<(&'static str, Matcher)> {
    let (t, s) = policy::essence(declared)?;
    let essence = format!("{t}/{s}");
    if let Some((_, name, m)) = SIGNATURES.iter().find(|(ct, _, _)| *ct == essence) {
        return Some((name, *m));
    }
    if ZIP_PREFIXES.iter().any(|p| essence.starts_with(p)) {
        return Some(("ZIP", is_zip as Matcher));
    }
    None
}

/// Checks the leading bytes (at most [`SNIFF_BYTES`] are looked at) against the
/// declared type. 415 `content_mismatch` when a signature type does not match.
pub fn check(declared: &str, head: &[u8]) -> Result<(), Rejection> {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    match signature(declared) {
        Some((name, matches)) if !matches(head) => Err(Rejection::new(
            ReasonCode::ContentMismatch,
            format!("the file's content is not {name}, as its declared content type says"),
        )),
        _ => Ok(()),
    }
}

/// The pre-finish verdict for an upload whose first bytes are `head`; `Err`:
/// the store did not give them (`storage_unavailable`, 503, after the same
/// partial and signature checks: deny by default, never an unchecked accept).
pub fn decide(upload: &Upload, gate: Gate<'_>, head: Result<&[u8], StoreUnavailable>) -> Verdict {
    if upload.is_partial {
        // a part's bytes are not the file's beginning (except the first part)
        return Verdict::Skip(ReasonCode::Partial);
    }
    let verified = match verify_signature_ignoring_expiry(&upload.metadata, &gate.upload.secrets) {
        Ok(v) => v,
        Err(d) => return Verdict::Reject(d.into()),
    };
    let Ok(head) = head else {
        return Verdict::Reject(Rejection::new(
            ReasonCode::StorageUnavailable,
            "the upload's content cannot be checked right now (the store did not answer); try again shortly",
        ));
    };
    match check(verified.content_type(), head) {
        Ok(()) => Verdict::Accept,
        Err(r) => Verdict::Reject(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::mint;
    use crate::token::upload::UploadRefusal;
    use crate::tusd::testing::*;

    #[test]
    fn signatures() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(check("image/png", png).is_ok());
        assert!(check("IMAGE/PNG; x=y", png).is_ok());
        let e = check("image/jpeg", png).unwrap_err();
        assert_eq!((e.status(), e.reason()), (415, ReasonCode::ContentMismatch));
        assert!(e.message().contains("JPEG"));
        assert!(check("image/jpeg", b"\xff\xd8\xff\xe0\0\x10JFIF").is_ok());
        assert!(check("image/gif", b"GIF89a\x01\0").is_ok());
        assert!(check("image/gif", b"GIF90a").is_err());
        assert!(check("image/webp", b"RIFF\x24\0\0\0WEBPVP8 ").is_ok());
        assert!(check("image/webp", b"RIFF\x24\0\0\0WAVEfmt ").is_err());
        assert!(check("application/pdf", b"%PDF-1.7\n").is_ok());
        assert!(check("application/pdf", b"\xef\xbb\xbf%PDF-1.4").is_ok());
        assert!(check("application/pdf", b"<html>").is_err());
        assert!(check("application/zip", b"PK\x03\x04\x14\0").is_ok());
        assert!(check("application/zip", b"PK\x05\x06").is_ok(), "empty archive");
        assert!(check(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            b"PK\x03\x04"
        )
        .is_ok());
        assert!(check("application/vnd.oasis.opendocument.text", b"%PDF-").is_err());
        assert!(check("application/gzip", b"\x1f\x8b\x08").is_ok());
        assert!(check("video/mp4", b"\0\0\0\x20ftypisom").is_ok());
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(check("application/x-tar", &tar).is_ok());
        assert!(check("application/x-tar", &tar[..260]).is_err());
    }

    #[test]
    fn unsigned_types_pass_and_empty_files_do_not_match() {
        assert!(check("text/plain", b"").is_ok());
        assert!(check("application/octet-stream", b"\x89PNG").is_ok());
        assert!(check("not a type", b"").is_ok());
        assert!(check("image/svg+xml", b"<svg").is_ok());
        assert!(check("image/png", b"").is_err());
        assert_eq!(expected_signature("image/png"), Some("PNG"));
        assert_eq!(expected_signature("text/csv"), None);
    }

    #[test]
    fn decide_uses_the_signed_type() {
        let up = upload_config(&[S1]);
        let st = storage_config();
        let gate = Gate {
            upload: &up,
            storage: &st,
            upload_ids: Default::default(),
        };
        let u = Upload {
            metadata: mint(S1.as_bytes(), "a.png", "image/png", Visibility::Private, 1),
            size: Some(8),
            offset: 8,
            ..Upload::default()
        };
        assert_eq!(decide(&u, gate, Ok(b"\x89PNG\r\n\x1a\n")), Verdict::Accept);
        let Verdict::Reject(r) = decide(&u, gate, Ok(b"GIF89a")) else {
            panic!()
        };
        assert_eq!(r.reason(), ReasonCode::ContentMismatch);
        let partial = Upload {
            is_partial: true,
            ..u.clone()
        };
        assert_eq!(
            decide(&partial, gate, Ok(b"GIF89a")),
            Verdict::Skip(ReasonCode::Partial)
        );
        let unsigned = Upload {
            metadata: Default::default(),
            ..u
        };
        let Verdict::Reject(r) = decide(&unsigned, gate, Ok(b"\x89PNG\r\n\x1a\n")) else {
            panic!()
        };
        assert_eq!(r.reason(), ReasonCode::Token(UploadRefusal::MetadataMissing));
    }

    /// The store did not give the leading bytes (backend = "s3"): refused
    /// with `storage_unavailable` (503), never accepted unchecked; a partial
    /// upload is still skipped and a bad signature still says so first.
    #[test]
    fn a_store_that_does_not_answer_refuses() {
        let up = upload_config(&[S1]);
        let st = storage_config();
        let gate = Gate {
            upload: &up,
            storage: &st,
            upload_ids: Default::default(),
        };
        let u = Upload {
            metadata: mint(S1.as_bytes(), "a.png", "image/png", Visibility::Private, 1),
            size: Some(8),
            offset: 8,
            ..Upload::default()
        };
        let Verdict::Reject(r) = decide(&u, gate, Err(StoreUnavailable)) else {
            panic!()
        };
        assert_eq!((r.reason(), r.status()), (ReasonCode::StorageUnavailable, 503));
        assert_eq!(r.reason().as_str(), "storage_unavailable");
        let partial = Upload {
            is_partial: true,
            ..u.clone()
        };
        assert_eq!(
            decide(&partial, gate, Err(StoreUnavailable)),
            Verdict::Skip(ReasonCode::Partial)
        );
        let unsigned = Upload {
            metadata: Default::default(),
            ..u
        };
        let Verdict::Reject(r) = decide(&unsigned, gate, Err(StoreUnavailable)) else {
            panic!()
        };
        assert_eq!(r.reason(), ReasonCode::Token(UploadRefusal::MetadataMissing));
    }
}
