//! The heap a hostile hook body or `.info` record costs to read: bounded by
//! what the model keeps, whatever the unknown fields hold.
//!
//! Regression test for the `#[serde(flatten)]` that the strict reading once
//! used for unknown fields: serde buffers every flattened entry as its own
//! `Content` tree, so a 256 KiB body (the daemon's `max_body_bytes`) of
//! unknown fields made the hook parser allocate 4 to 16 MiB. Counted with
//! dhat's heap profiler in testing mode (its own test binary: one profiler per
//! process; bytes and blocks allocated are exact counts, not timings).

use assetgate_core::tusd::protocol::{parse, parse_file_info};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The daemon's default cap on a hook body (`server.max_body_bytes`).
const BODY: usize = 256 * 1024;

/// Bytes and blocks allocated while `f` runs, freed or not: an upper bound of
/// its peak that, unlike dhat's process-wide peak, can be taken for one call.
fn heap_of(f: impl FnOnce()) -> (u64, u64) {
    let before = dhat::HeapStats::get();
    f();
    let after = dhat::HeapStats::get();
    (
        after.total_bytes - before.total_bytes,
        after.total_blocks - before.total_blocks,
    )
}

/// `{"X":[0,0,…]}`-like filler of about `BODY` bytes: many small values, the
/// most `Content` nodes per byte.
fn filler() -> String {
    let mut s = String::from("[0");
    while s.len() < BODY - 200 {
        s.push_str(",0");
    }
    s.push(']');
    s
}

/// Many unknown keys instead of one large value.
fn many_keys() -> String {
    let mut s = String::from("{");
    let mut i = 0u32;
    while s.len() < BODY - 200 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(r#""k{i}":{{}}"#));
        i += 1;
    }
    s.push('}');
    s
}

#[test]
fn hostile_bodies_allocate_what_the_model_keeps() {
    let _profiler = dhat::Profiler::builder().testing().build();
    kept_fields_stop_at_their_bound();
    let (fill, keys) = (filler(), many_keys());
    let mut bodies: Vec<(String, String)> = Vec::new();
    for (what, junk) in [("array", &fill), ("keys", &keys)] {
        bodies.push((
            format!("{} ({what})", "v2 top"),
            format!(r#"{{"Type":"pre-create","X":{junk},"Event":{{"Upload":{{"ID":""}}}}}}"#),
        ));
        bodies.push((
            format!("{} ({what})", "v2 Event"),
            format!(r#"{{"Type":"pre-create","Event":{{"X":{junk},"Upload":{{"ID":""}}}}}}"#),
        ));
        bodies.push((
            format!("{} ({what})", "v2 Upload"),
            format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{"ID":"","X":{junk}}}}}}}"#),
        ));
        bodies.push((format!("{} ({what})", "v2 Storage"),
            format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{"Storage":{{"Type":"filestore","X":{junk}}}}}}}}}"#),
        ));
        bodies.push((format!("{} ({what})", "v2 HTTPRequest"),
            format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{}},"HTTPRequest":{{"Method":"POST","X":{junk}}}}}}}"#),
        ));
        bodies.push((
            format!("{} ({what})", "v1 Upload"),
            format!(r#"{{"Upload":{{"ID":"a","X":{junk}}}}}"#),
        ));
        bodies.push((
            format!("{} ({what})", "v1 top"),
            format!(r#"{{"X":{junk},"Upload":{{"ID":"a"}}}}"#),
        ));
    }
    let mut over = Vec::new();
    for (at, body) in &bodies {
        assert!(body.len() <= BODY, "{at}: {} bytes", body.len());
        serde_json::from_str::<serde_json::Value>(body).expect("the hostile body is JSON");
        let (bytes, blocks) = heap_of(|| {
            let hook = parse(body.as_bytes(), Some("pre-create"));
            assert!(hook.is_ok(), "{at}: {hook:?}");
        });
        println!(
            "{at}: {} bytes of body: {bytes} bytes in {blocks} blocks allocated",
            body.len()
        );
        // What the model keeps (an ID, a Storage type) and serde_json's
        // scratch for escapes: a few hundred bytes; a buffered unknown field
        // is megabytes.
        if bytes >= 4096 || blocks >= 16 {
            over.push(format!("{at}: {bytes} bytes in {blocks} blocks"));
        }
    }
    // A tusd `.info` record is the same model.
    let info = format!(r#"{{"ID":"a","Size":1,"Offset":1,"X":{fill}}}"#);
    let (bytes, blocks) = heap_of(|| {
        let upload = parse_file_info(info.as_bytes());
        assert!(upload.is_ok(), "{upload:?}");
    });
    println!(
        ".info: {} bytes: {bytes} bytes in {blocks} blocks allocated",
        info.len()
    );
    if bytes >= 4096 || blocks >= 16 {
        over.push(format!(".info: {bytes} bytes in {blocks} blocks"));
    }
    assert!(over.is_empty(), "allocated too much: {over:#?}");
}

/// The fields the model keeps are bounded where they are read: a body of
/// thousands of partial-upload IDs or metadata entries is refused once past
/// the bound, having allocated about what the bound admits (it cost 4.7 to
/// 6.3 MB for a 256 KiB body before: ten to eighteen times the body).
/// (Called by the test above: one dhat profiler per process.)
fn kept_fields_stop_at_their_bound() {
    let mut parts = String::from("[\"\"");
    while parts.len() < BODY - 200 {
        parts.push_str(",\"\"");
    }
    parts.push(']');
    let mut meta = String::from("{");
    let mut i = 0u32;
    while meta.len() < BODY - 200 {
        if i > 0 {
            meta.push(',');
        }
        meta.push_str(&format!("\"m{i}\":\"\""));
        i += 1;
    }
    meta.push('}');
    let cases = [
        (
            "PartialUploads",
            format!(
                r#"{{"Type":"pre-create","Event":{{"Upload":{{"IsFinal":true,"PartialUploads":{parts}}}}}}}"#
            ),
            "Event.Upload.PartialUploads: more than 1024 partial uploads",
        ),
        (
            "MetaData",
            format!(r#"{{"Type":"pre-create","Event":{{"Upload":{{"MetaData":{meta}}}}}}}"#),
            "Event.Upload.MetaData: more than 256 metadata entries",
        ),
    ];
    let mut over = Vec::new();
    for (at, body, error) in &cases {
        assert!(body.len() <= BODY, "{at}: {} bytes", body.len());
        let (bytes, blocks) = heap_of(|| {
            let got = parse(body.as_bytes(), None);
            assert!(
                matches!(&got, Err(assetgate_core::tusd::protocol::HookError::Field(e)) if e == error),
                "{at}: {:?}",
                got.as_ref()
                    .map(|h| h.upload.partial_uploads.len() + h.upload.metadata.len())
            );
        });
        println!(
            "{at}: {} bytes of body: {bytes} bytes in {blocks} blocks allocated",
            body.len()
        );
        // The kept entries (at most 1,024 IDs, 256 metadata names) and the error's
        // path: well under the body's
        // own size, where the unbounded reading took ten times it.
        if bytes >= BODY as u64 / 2 {
            over.push(format!("{at}: {bytes} bytes in {blocks} blocks"));
        }
    }
    assert!(over.is_empty(), "allocated too much: {over:#?}");
}
