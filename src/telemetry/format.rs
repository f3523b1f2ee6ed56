//! A cheaper formatter for the log lines, with tracing-subscriber's output.
//!
//! The stock formatters build every line through `core::fmt`: the timestamp
//! from its parts, each field name through an ANSI "style" (a no-op without a
//! terminal) and each value through `{:?}`. On `/auth` that was about a tenth of
//! the daemon's CPU. [`Fast`] writes the same bytes directly: the timestamp's
//! date and time are formatted once per second per thread, strings and integers
//! are appended as they are, and only values that need `Debug` or escaping go
//! through `core::fmt`.
//!
//! It produces exactly what the stock formatter it wraps would, for the events
//! it takes; anything else is handed to that formatter: a terminal (colours),
//! an event inside a span, an event bridged from the `log` crate, or a field of
//! a rarer type (floats, 128-bit integers, errors, bytes), a `Debug` that
//! fails, a date past year 9999. The unit tests compare both outputs byte for
//! byte. Known differences, none reachable from the daemon's own events: a
//! `Debug` that panics leaves no half line behind (the stock formatter's
//! leftover is glued to the next event), and when an event is handed over
//! after some of its fields were visited, those fields' `Debug` runs twice
//! (visible only if it has side effects, such as logging itself).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as `stock` would, faster for plain events.
pub struct Fast<F> {
    stock: F,
    json: bool,
}

impl<F> Fast<F> {
    /// tracing-subscriber's `Full` text format without target: `stock` must be
    /// `format().with_target(false)`.
    pub fn text(stock: F) -> Self {
        Fast { stock, json: false }
    }

    /// tracing-subscriber's JSON format, flattened, without target: `stock`
    /// must be `format().with_target(false).json().flatten_event(true)`.
    pub fn json(stock: F) -> Self {
        Fast { stock, json: true }
    }
}

/// 10000-01-01T00:00:00Z.
const LAST_FOUR_DIGIT_YEAR: u64 = 253_402_300_800;

struct Scratch {
    line: String,
    value: String,
    /// The second `prefix` was formatted for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `second`.
    prefix: String,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        line: String::with_capacity(256),
        value: String::new(),
        second: u64::MAX,
        prefix: String::new(),
    });
}

impl<S, N, F> FormatEvent<S, N> for Fast<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Spans: text shows the event's scope; JSON also shows the current
        // span for an explicitly rootless event (`parent: None`).
        if writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
            || (self.json && ctx.lookup_current().is_some())
        {
            return self.stock.format_event(ctx, writer, event);
        }
        let sanitize = writer.sanitizes_ansi_escapes();
        let done = SCRATCH.with(|cell| {
            // A value's Debug impl that logs would re-enter: let the stock
            // formatter handle that one.
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                return false;
            };
            let Scratch {
                line,
                value,
                second,
                prefix,
            } = &mut *scratch;
            line.clear();
            let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
                return false;
            };
            if now.as_secs() >= LAST_FOUR_DIGIT_YEAR {
                // The stock timer writes `+10000-…` from then on.
                return false;
            }
            if now.as_secs() != *second {
                *second = now.as_secs();
                prefix.clear();
                date_time_prefix(now.as_secs(), prefix);
            }
            let level = event.metadata().level();
            if self.json {
                line.push_str("{\"timestamp\":\"");
                push_timestamp(line, prefix, now.subsec_micros());
                line.push_str("\",\"level\":\"");
                line.push_str(level_json(level));
                line.push('"');
            } else {
                push_timestamp(line, prefix, now.subsec_micros());
                line.push(' ');
                line.push_str(level_text(level));
                line.push(' ');
            }
            let mut visitor = Fields {
                line,
                value,
                json: self.json,
                sanitize,
                first: true,
                unsupported: false,
            };
            event.record(&mut visitor);
            if visitor.unsupported {
                return false;
            }
            line.push_str(if self.json { "}\n" } else { "\n" });
            #[cfg(test)]
            tests::FAST_LINES.with(|n| n.set(n.get() + 1));
            writer.write_str(line).is_ok()
        });
        if done {
            Ok(())
        } else {
            self.stock.format_event(ctx, writer, event)
        }
    }
}

/// tracing-subscriber's level column (`FmtLevel` without ANSI).
fn level_text(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

fn level_json(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// Appends `prefix` and the microseconds and `Z`: RFC 3339 as
/// tracing-subscriber's `SystemTime` timer writes it.
fn push_timestamp(line: &mut String, prefix: &str, micros: u32) {
    line.push_str(prefix);
    push_padded(line, u64::from(micros), 6);
    line.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` (UTC) for `secs` since the epoch.
pub(crate) fn date_time_prefix(secs: u64, out: &mut String) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    push_padded(out, y, 4);
    out.push('-');
    push_padded(out, m, 2);
    out.push('-');
    push_padded(out, d, 2);
    out.push('T');
    push_padded(out, rem / 3600, 2);
    out.push(':');
    push_padded(out, rem % 3600 / 60, 2);
    out.push(':');
    push_padded(out, rem % 60, 2);
    out.push('.');
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or("0"));
}

fn push_i64(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_padded(out, n.unsigned_abs(), 1);
}

/// Whether `{:?}` of `s` is `s` in quotes, non-ASCII text included (a key such
/// as `photos/été/…`): ASCII as [`plain_ascii`], and each other character
/// printable and not a combining mark (`char::escape_debug` leaves it alone,
/// which is what `str`'s `Debug` asks of it). Cheaper than formatting it.
pub(crate) fn debug_is_quoted(s: &str) -> bool {
    s.chars().all(|c| {
        if c.is_ascii() {
            (' '..='~').contains(&c) && c != '"' && c != '\\'
        } else {
            c.escape_debug().len() == 1
        }
    })
}

/// Whether `{:?}` of `s` is `s` in quotes (and JSON would not escape it either).
fn plain_ascii(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// The field visitor: tracing-subscriber's `DefaultVisitor` (text) or
/// tracing-serde's map visitor (JSON), for the value types the daemon logs.
struct Fields<'a> {
    line: &'a mut String,
    value: &'a mut String,
    json: bool,
    sanitize: bool,
    first: bool,
    unsupported: bool,
}

impl Fields<'_> {
    /// Writes the separator and name; `None` when the field is skipped or the
    /// event is left to the stock formatter.
    fn key(&mut self, field: &Field) -> Option<bool> {
        if self.unsupported {
            return None;
        }
        let name = field.name();
        if name.starts_with("log.") {
            // Bridged from the `log` crate: metadata the stock formatter rewrites.
            self.unsupported = true;
            return None;
        }
        if self.json {
            self.line.push(',');
            push_json_str(self.line, name);
            self.line.push(':');
            return Some(name == "message");
        }
        if self.first {
            self.first = false;
        } else {
            self.line.push(' ');
        }
        if name == "message" {
            return Some(true);
        }
        self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
        self.line.push('=');
        Some(false)
    }

    fn unsupported(&mut self) {
        self.unsupported = true;
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let Some(message) = self.key(field) else {
            return;
        };
        if self.json {
            push_json_str(self.line, value);
        } else if message {
            let start = self.line.len();
            self.line.push_str(value);
            if self.sanitize {
                sanitize_from(self.line, start);
            }
        } else if plain_ascii(value) || debug_is_quoted(value) {
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else if write!(self.line, "{value:?}").is_err() {
            self.unsupported();
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field).is_some() {
            push_i64(self.line, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field).is_some() {
            push_padded(self.line, value, 1);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field).is_some() {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let Some(message) = self.key(field) else {
            return;
        };
        // A `Debug` that fails: the stock formatter's own handling.
        if self.json {
            self.value.clear();
            if write!(self.value, "{value:?}").is_err() {
                return self.unsupported();
            }
            push_json_str(self.line, self.value);
        } else {
            let start = self.line.len();
            if write!(self.line, "{value:?}").is_err() {
                return self.unsupported();
            }
            if message && self.sanitize {
                sanitize_from(self.line, start);
            }
        }
    }

    fn record_f64(&mut self, _: &Field, _: f64) {
        self.unsupported();
    }

    fn record_i128(&mut self, _: &Field, _: i128) {
        self.unsupported();
    }

    fn record_u128(&mut self, _: &Field, _: u128) {
        self.unsupported();
    }

    fn record_bytes(&mut self, _: &Field, _: &[u8]) {
        self.unsupported();
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.unsupported();
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// Escapes, in `line[start..]`, what tracing-subscriber's ANSI sanitizer
/// escapes in a message: ESC, BEL, BS, FF, DEL and the C1 controls.
fn sanitize_from(line: &mut String, start: usize) {
    let needs = line[start..].chars().any(|c| {
        matches!(
            c,
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
        )
    });
    if !needs {
        return;
    }
    let raw = line.split_off(start);
    for c in raw.chars() {
        match c {
            '\x1b' => line.push_str("\\x1b"),
            '\x07' => line.push_str("\\x07"),
            '\x08' => line.push_str("\\x08"),
            '\x0c' => line.push_str("\\x0c"),
            '\x7f' => line.push_str("\\x7f"),
            '\u{80}'..='\u{9f}' => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_quoted_only_when_debug_quotes_verbatim() {
        for u in (0u32..0x1_0000).chain((0x1_0000..0x11_0000).step_by(97)) {
            let Some(ch) = char::from_u32(u) else { continue };
            for s in [format!("{ch}"), format!("a{ch}b"), format!("photos/été/{ch}")] {
                if debug_is_quoted(&s) {
                    assert_eq!(format!("{s:?}"), format!("\"{s}\""), "{u:#x}");
                }
            }
        }
        assert!(debug_is_quoted("photos/été 2026/plage.jpg"));
        assert!(!debug_is_quoted("a\u{301}"));
        assert!(!debug_is_quoted("\u{9b}31m"));
    }
    use std::io;
    use std::process::Command;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    thread_local! {
        /// Lines this thread formatted on the fast path (not handed to stock).
        pub(super) static FAST_LINES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `events` under the stock and the fast formatter; returns both outputs.
    fn both(json: bool, events: &dyn Fn()) -> (String, String) {
        FAST_LINES.with(|n| n.set(0));
        let stock = Buf::default();
        let fast = Buf::default();
        let b = || {
            tracing_subscriber::fmt()
                .with_max_level(Level::TRACE)
                .with_target(false)
                .with_ansi(false)
        };
        if json {
            let s = b().json().flatten_event(true).with_writer(stock.clone()).finish();
            tracing::subscriber::with_default(s, events);
            let f = b()
                .json()
                .flatten_event(true)
                .event_format(Fast::json(
                    tracing_subscriber::fmt::format()
                        .with_target(false)
                        .json()
                        .flatten_event(true),
                ))
                .with_writer(fast.clone())
                .finish();
            tracing::subscriber::with_default(f, events);
        } else {
            let s = b().with_writer(stock.clone()).finish();
            tracing::subscriber::with_default(s, events);
            let f = b()
                .event_format(Fast::text(tracing_subscriber::fmt::format().with_target(false)))
                .with_writer(fast.clone())
                .finish();
            tracing::subscriber::with_default(f, events);
        }
        let (stock, fast) = (stock.text(), fast.text());
        // Every event but the four left to the stock formatter took the fast
        // path (events are counted by their stamps: messages may hold newlines).
        let events = without_stamps(&fast).1.len();
        let fallbacks = fast.matches("a float").count()
            + fast.matches("128-bit").count()
            + fast.matches("an error value").count()
            + fast.matches("in a span").count()
            + fast.matches("a failing Debug").count()
            // Text shows no span for a rootless event: that one takes the fast path.
            - if json { 0 } else { fast.matches("rootless in a span").count() };
        assert_eq!(FAST_LINES.with(|n| n.get()), events - fallbacks, "{fast}");
        (stock, fast)
    }

    /// Whether `w` (27 bytes) looks like `2026-11-22T15:51:40.326367Z`.
    fn is_stamp(w: &[u8]) -> bool {
        w.len() == 27
            && w.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                26 => c == b'Z',
                _ => c.is_ascii_digit(),
            })
    }

    /// `out` with every timestamp replaced by `<T>`, and the timestamps.
    fn without_stamps(out: &str) -> (String, Vec<String>) {
        let b = out.as_bytes();
        let (mut rest, mut stamps, mut i) = (Vec::new(), Vec::new(), 0);
        while i < b.len() {
            if i + 27 <= b.len() && is_stamp(&b[i..i + 27]) {
                stamps.push(out[i..i + 27].to_string());
                rest.extend_from_slice(b"<T>");
                i += 27;
            } else {
                rest.push(b[i]);
                i += 1;
            }
        }
        (String::from_utf8(rest).unwrap(), stamps)
    }

    /// Both outputs are the same but for the timestamps, which are in the same
    /// places and agree to the minute (they are taken moments apart).
    fn same_but_time(stock: &str, fast: &str) {
        let (s, st) = without_stamps(stock);
        let (f, ft) = without_stamps(fast);
        assert!(
            !st.is_empty() && st.len() == ft.len(),
            "stock:\n{stock}\nfast:\n{fast}"
        );
        for (a, b) in st.iter().zip(&ft) {
            assert_eq!(a[..16], b[..16], "timestamps {a} and {b}");
        }
        if s != f {
            for (a, b) in s.lines().zip(f.lines()) {
                assert_eq!(a, b);
            }
            panic!("outputs differ:\nstock:\n{s}\nfast:\n{f}");
        }
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Dbg {
        a: u8,
        b: &'static str,
    }

    struct Disp(&'static str);
    impl fmt::Display for Disp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    #[derive(Debug)]
    struct Oops;
    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("oops")
        }
    }
    impl std::error::Error for Oops {}

    const STRINGS: &[&str] = &[
        "",
        "plain",
        "/private/bench/file-0001.bin",
        "with space and = and , and 'single'",
        "quote\"inside",
        "back\\slash",
        "new\nline\ttab\rcr",
        "esc \x1b[31mred\x1b[0m bel\x07 bs\x08 ff\x0c del\x7f nul\0",
        "c1 \u{85} \u{9b}31m \u{9f}",
        "été 2026 ✓ 日本",
        "zero\u{200b}width \u{301}combining \u{feff}bom \u{fffd}",
        "{\"json\":[1,2]}",
    ];

    fn events() {
        for s in STRINGS {
            tracing::info!(endpoint = "auth", decision = "allow", value = *s, "link accepted");
            tracing::warn!(value = %Disp(s), dbg = ?s, "display and debug");
            tracing::info!("{}", s);
            tracing::error!(message = *s);
            tracing::debug!(key = *s, cleanup = ?Some(*s), "message with {} args", s);
        }
        tracing::info!(
            endpoint = "auth",
            decision = "allow",
            reason = "ok",
            uri = %Disp("/private/été/a b.bin"),
            expires = 1_795_366_287_i64,
            "link accepted"
        );
        tracing::info!(
            n = -5_i64,
            m = 0_u64,
            big = u64::MAX,
            small = i64::MIN,
            yes = true,
            no = false,
            "numbers"
        );
        tracing::trace!(r#type = "raw", "raw identifier");
        tracing::info!("r#odd" = 1_u64, "dotted.name" = "x", "a field named with r#");
        tracing::info!(only = 1_u64);
        tracing::info!("");
        tracing::warn!(addr = %"127.0.0.1:9750", version = "0.1.0", "listening");
        tracing::info!(value = ?Dbg { a: 1, b: "x\"y" }, pretty = ?vec![1, 2], "debug structs");
        // Left to the stock formatter: each must still come out identical.
        tracing::info!(f = 1.5_f64, "a float");
        tracing::info!(i = 1_i128, u = 2_u128, "128-bit");
        tracing::info!(
            error = &Oops as &(dyn std::error::Error + 'static),
            "an error value"
        );
        let span = tracing::info_span!("request", id = 7);
        span.in_scope(|| tracing::info!(inside = "span", "in a span"));
        span.in_scope(|| tracing::info!(parent: None, "rootless in a span"));
    }

    #[test]
    fn text_output_is_the_stock_formatters() {
        let (stock, fast) = both(false, &events);
        assert!(stock.lines().count() > 60, "{stock}");
        same_but_time(&stock, &fast);
        // What an operator greps for, spelled out once.
        assert!(fast.contains(
            " INFO link accepted endpoint=\"auth\" decision=\"allow\" reason=\"ok\" uri=/private/été/a b.bin expires=1795366287\n"
        ));
        assert!(
            fast.contains("ERROR esc \\x1b[31mred"),
            "message sanitized: {fast}"
        );
    }

    #[test]
    fn json_output_is_the_stock_formatters() {
        let (stock, fast) = both(true, &events);
        assert!(stock.lines().count() > 60, "{stock}");
        same_but_time(&stock, &fast);
        for line in fast.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        }
    }

    struct FailingDebug;
    impl fmt::Debug for FailingDebug {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("partial")?;
            Err(fmt::Error)
        }
    }

    #[test]
    fn a_failing_debug_is_left_to_the_stock_formatter() {
        // Text only: tracing-subscriber's JSON formatter panics on this one.
        let events = || {
            tracing::info!(v = ?FailingDebug, "a failing Debug");
            tracing::info!("after it");
        };
        let (stock, fast) = both(false, &events);
        assert!(stock.contains("Unable to format"), "{stock}");
        same_but_time(&stock, &fast);
    }

    #[test]
    fn random_strings_come_out_as_the_stock_formatters() {
        // A small xorshift: no rand crate in the library's dependencies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let pool: Vec<char> = "aZ09 =\"\\'{}:,\n\t\r\x1b\x07\x08\x0c\x7f\0\u{85}\u{9f}\u{a0}é✓\u{200b}\u{301}\u{fffd}\u{1f600}%/?&"
            .chars()
            .collect();
        let strings: Vec<String> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = (x % 12) as usize;
                (0..len)
                    .map(|i| pool[((x >> (i * 5)) % pool.len() as u64) as usize])
                    .collect()
            })
            .collect();
        let events = || {
            for s in &strings {
                tracing::info!(field = s.as_str(), shown = %s, "msg {}", s);
                tracing::info!(message = s.as_str());
            }
        };
        for json in [false, true] {
            let (stock, fast) = both(json, &events);
            same_but_time(&stock, &fast);
        }
    }

    #[test]
    fn timestamps_match_gnu_date() {
        // Day boundaries, leap days, century rules, the 2038 and 10000-year edges.
        let mut secs = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,   // 2000-02-29
            951_868_800,   // 2000-03-01
            1_078_012_800, // 2004-02-29
            1_795_366_287,
            2_147_483_647,
            2_147_483_648,
            4_107_542_400,   // 2100-03-01 (2100 is not a leap year)
            4_102_444_799,   // 2099-12-31T23:59:59
            13_569_465_600,  // 2400-01-01
            253_402_300_799, // 9999-12-31T23:59:59
        ];
        let mut x: u64 = 88_172_645_463_325_252;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            secs.push(x % 253_402_300_800);
        }
        let mut args = vec![
            "-u".to_string(),
            "-f".into(),
            "-".into(),
            "+%Y-%m-%dT%H:%M:%S.".into(),
        ];
        let input: String = secs.iter().map(|s| format!("@{s}\n")).collect();
        let mut child = Command::new("date")
            .args(args.drain(..))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("GNU date (coreutils) is needed for this test");
        io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let want: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(want.len(), secs.len());
        for (s, w) in secs.iter().zip(&want) {
            let mut got = String::new();
            date_time_prefix(*s, &mut got);
            assert_eq!(&got, w, "second {s}");
        }
        let mut line = String::new();
        push_timestamp(&mut line, "2026-11-22T15:51:40.", 7);
        assert_eq!(line, "2026-11-22T15:51:40.000007Z");
    }

    #[test]
    fn integers() {
        for (n, want) in [
            (0_i64, "0"),
            (-1, "-1"),
            (i64::MIN, "-9223372036854775808"),
            (i64::MAX, "9223372036854775807"),
        ] {
            let mut s = String::new();
            push_i64(&mut s, n);
            assert_eq!(s, want);
        }
        let mut s = String::new();
        push_padded(&mut s, u64::MAX, 1);
        push_padded(&mut s, 5, 4);
        push_padded(&mut s, 123_456, 2);
        assert_eq!(s, "184467440737095516150005123456");
    }
}
