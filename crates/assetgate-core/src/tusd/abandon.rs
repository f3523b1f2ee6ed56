//! Abandoned uploads: which unfinished uploads may the gate delete?
//!
//! tusd's filestore never cleans up (its docs suggest a cron job). The gate
//! knows what a cron job cannot: the token each upload was created with. An
//! upload is removed when, and only when:
//!
//! - it is not a finished upload (a finished one is published or kept for an
//!   operator, never deleted here); finished *partial* uploads (parts of a
//!   parallel upload) count as unfinished work: their final upload takes their
//!   bytes, or never comes;
//! - its stored metadata carries a token the gate verifies (signature only):
//!   anything the gate cannot attribute to a verified token is left alone and
//!   counted ([`Keep::Unattributable`]);
//! - that token expired more than `[tusd] abandon_after` ago: nobody can resume
//!   it any more (the `/session` window closes at expiry + `session_grace`, and
//!   a new upload needs a new token anyway).
//!
//! Pure: the caller reads the records and passes the time.

use super::Part;
use crate::secret::SecretSet;
use crate::token::upload::verify_signature_ignoring_expiry;

/// Why an upload stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A finished, whole upload.
    Finished,
    /// Its token is still inside `expires + abandon_after`.
    StillValid,
    /// No verified token to attribute it to.
    Unattributable,
}

impl Keep {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Finished => "finished",
            Keep::StillValid => "still_valid",
            Keep::Unattributable => "unattributable",
        }
    }
}

/// Remove the upload, or keep it and why.
pub fn decide(record: &Part, secrets: &SecretSet, now: i64, abandon_after: i64) -> Result<(), Keep> {
    if record.finished && !record.is_partial {
        return Err(Keep::Finished);
    }
    let verified =
        verify_signature_ignoring_expiry(&record.metadata, secrets).map_err(|_| Keep::Unattributable)?;
    if now <= verified.expires().saturating_add(abandon_after) {
        return Err(Keep::StillValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Visibility;
    use crate::token::upload::mint;

    const S: &str = "abandon-secret-0123456789";
    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn rec(expires: i64, finished: bool, is_partial: bool, secret: &str) -> Part {
        Part {
            is_partial,
            finished,
            metadata: mint(
                secret.as_bytes(),
                "k.bin",
                "application/octet-stream",
                Visibility::Public,
                expires,
            ),
        }
    }

    #[test]
    fn only_unfinished_attributable_long_expired_uploads_go() {
        let secrets = SecretSet::from_texts(&[S]);
        let d = |r: &Part| decide(r, &secrets, NOW, DAY);
        assert_eq!(d(&rec(NOW - DAY - 1, false, false, S)), Ok(()));
        assert_eq!(
            d(&rec(NOW - DAY, false, false, S)),
            Err(Keep::StillValid),
            "boundary kept"
        );
        assert_eq!(d(&rec(NOW + 60, false, false, S)), Err(Keep::StillValid));
        assert_eq!(d(&rec(NOW - 9 * DAY, true, false, S)), Err(Keep::Finished));
        assert_eq!(
            d(&rec(NOW - 9 * DAY, true, true, S)),
            Ok(()),
            "a finished part goes"
        );
        assert_eq!(d(&rec(NOW - 9 * DAY, false, true, S)), Ok(()));
        let other = "some-other-secret-0123456";
        assert_eq!(
            d(&rec(NOW - 9 * DAY, false, false, other)),
            Err(Keep::Unattributable)
        );
        let mut no_token = rec(NOW - 9 * DAY, false, false, S);
        no_token.metadata.clear();
        assert_eq!(d(&no_token), Err(Keep::Unattributable));
    }
}
