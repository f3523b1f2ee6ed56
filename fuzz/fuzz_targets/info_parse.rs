//! The upload-record (`.info`) parser the mover trusts (`finalize::parse_info`,
//! reached through `finalize::parse_info_for_fuzzing`, feature `fuzzing`) on
//! arbitrary bytes: tusd filestore records (`ID`, tusd's `FileInfo`, the hook
//! model `tusd::protocol::parse_file_info` reads) and rustus file-info records
//! (`id`, snake case), both read as strictly as a hook body (`tusd::json`).
//!
//! Checked:
//! - no panic;
//! - `Ok(id)` only for a JSON object, and `id` is the non-empty `ID` of a tusd
//!   record, else the non-empty `id` of a rustus record without a `/` (a rustus
//!   ID becomes a file name next to the record);
//! - a JSON object with neither `ID` nor `id` is refused;
//! - every refusal says `malformed: …` or, for a tusd record whose
//!   `Storage.Path` does not end in its `ID`, `does not describe <dir>/<ID>: …`
//!   (bytes alone cannot cause an I/O error);
//! - a record is refused as not JSON (`malformed: not JSON: …`) exactly when
//!   `serde_json::from_slice::<Value>` refuses it (fuzz/findings F1);
//! - parsing is independent of the JSON spelling: the re-serialised
//!   `serde_json::Value` gives the same answer (if an object gives a key twice,
//!   the re-serialised one has only the last: then the record is refused or
//!   reads alike).
#![no_main]

use assetgate::finalize::parse_info_for_fuzzing;
use assetgate::tusd::json::repeats_a_key;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let got = parse_info_for_fuzzing(data);
    let value = serde_json::from_slice::<Value>(data).ok();
    let not_json = got
        .as_ref()
        .is_err_and(|e| e.starts_with("malformed: not JSON: "));
    assert_eq!(
        not_json,
        value.is_none(),
        "refused as not JSON iff Value refuses it: {got:?}"
    );
    match &got {
        Ok(id) => {
            assert!(!id.is_empty(), "empty ID accepted");
            let obj = value
                .as_ref()
                .and_then(Value::as_object)
                .expect("accepted bytes are a JSON object");
            match obj.get("ID") {
                Some(tusd) => assert_eq!(tusd.as_str(), Some(id.as_str()), "tusd ID"),
                None => {
                    assert_eq!(obj["id"].as_str(), Some(id.as_str()), "rustus id");
                    assert!(!id.contains('/'), "rustus id with a '/': {id:?}");
                }
            }
        }
        Err(e) => {
            assert!(
                e.starts_with("malformed: ") || e.starts_with("does not describe <dir>/<ID>: "),
                "{e}"
            );
        }
    }
    if let Some(obj) = value.as_ref().and_then(Value::as_object) {
        if !obj.contains_key("ID") && !obj.contains_key("id") {
            assert!(got.is_err(), "neither ID nor id, yet accepted");
        }
    }
    if let Some(value) = &value {
        let canonical = serde_json::to_vec(value).expect("a Value serialises");
        let again = parse_info_for_fuzzing(&canonical);
        if repeats_a_key(data) {
            assert!(
                got.is_err() || got.as_ref().ok() == again.as_ref().ok(),
                "a key given twice: the last one is not what counts"
            );
        } else {
            assert_eq!(
                got.as_ref().ok(),
                again.as_ref().ok(),
                "re-serialised record parses differently"
            );
        }
    }
});
