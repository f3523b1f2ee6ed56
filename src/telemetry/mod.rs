//! Structured logs (tracing), text or JSON, to stderr.
//!
//! One line per gate decision at `info` is a product requirement, so the line
//! must be cheap. Events are still formatted on the request's thread (the
//! timestamp is the decision's), but the write is not: each formatted line goes
//! through a bounded channel to one writer thread, which wakes at most every
//! [`BATCH_INTERVAL`] under load and writes everything queued with one
//! `write(2)`. A request then pays a copy and a channel send instead of a
//! syscall, and no line is ever dropped: when the queue is full, the request
//! waits (as it would for a slow stderr). Lines are formatted by
//! [`format::Fast`], which writes what tracing-subscriber's formatters would,
//! with less work.

pub mod format;

use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogLevel};
use format::Fast;

/// Lines that may wait for the writer thread before a request blocks.
const QUEUE_LINES: usize = 4096;
/// How long the writer sleeps between batches while lines keep coming.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(2);

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Hands formatted lines to the writer thread.
#[derive(Clone)]
pub struct QueuedStderr {
    tx: SyncSender<Msg>,
}

impl Write for QueuedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber writes each formatted event with one `write_all`,
        // so one message is one line.
        self.tx
            .send(Msg::Line(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "log writer thread is gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueuedStderr {
    type Writer = QueuedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Flushes every queued line when dropped: hold it until the process exits.
#[must_use = "dropping the guard flushes the log queue; hold it until exit"]
pub struct FlushGuard {
    tx: Option<SyncSender<Msg>>,
}

impl FlushGuard {
    /// Waits (up to 2 s) until every line logged so far is written.
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (ack_tx, ack_rx) = mpsc::sync_channel(1);
            if tx.send(Msg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv_timeout(Duration::from_secs(2));
            }
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.flush();
    }
}

fn writer_thread(rx: Receiver<Msg>, out: impl Write) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let handle = |msg: Msg, out: &mut BufWriter<_>| match msg {
        Msg::Line(line) => {
            let _ = out.write_all(&line);
        }
        Msg::Flush(ack) => {
            let _ = out.flush();
            let _ = ack.send(());
        }
    };
    // Idle: block on the queue. Busy: drain, write once, sleep a little so
    // that senders find nobody to wake, and drain again.
    while let Ok(first) = rx.recv() {
        handle(first, &mut out);
        loop {
            let mut got = false;
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        handle(m, &mut out);
                        got = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        let _ = out.flush();
                        return;
                    }
                }
            }
            let _ = out.flush();
            if !got {
                break;
            }
            // Sleep, not a timed wait on the queue: a sender then finds no
            // waiter and sends without a wake-up syscall.
            std::thread::sleep(BATCH_INTERVAL);
        }
    }
}

/// Installs the global subscriber, with the filter and format parsed when the
/// configuration was loaded.
pub fn init(level: &LogLevel, format: LogFormat) -> FlushGuard {
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let spawned = std::thread::Builder::new()
        .name("assetgate-log".into())
        .spawn(move || writer_thread(rx, io::stderr()));
    let filter = level.env_filter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let stock = tracing_subscriber::fmt::format().with_target(false);
    let (writer, guard_tx) = match spawned {
        Ok(_) => (Some(QueuedStderr { tx: tx.clone() }), Some(tx)),
        Err(_) => (None, None),
    };
    // A second init (tests calling run() twice) is not an error worth dying for.
    let _ = match format {
        LogFormat::Text => {
            let b = builder.event_format(Fast::text(stock));
            match writer {
                Some(w) => b.with_writer(w).try_init(),
                // No thread for the writer: write directly, as before.
                None => b.with_writer(io::stderr).try_init(),
            }
        }
        LogFormat::Json => {
            let b = builder
                .json()
                .flatten_event(true)
                .event_format(Fast::json(stock.json().flatten_event(true)));
            match writer {
                Some(w) => b.with_writer(w).try_init(),
                None => b.with_writer(io::stderr).try_init(),
            }
        }
    };
    FlushGuard { tx: guard_tx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_and_writes_are_batched() {
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let sink = Sink::default();
        let out = sink.clone();
        let t = std::thread::spawn(move || writer_thread(rx, out));
        let guard = FlushGuard { tx: Some(tx.clone()) };
        let mut w = QueuedStderr { tx };
        let n = 10_000;
        for i in 0..n {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        guard.flush();
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), n);
        assert!(lines.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
        assert!(writes < n, "{writes} writes for {n} lines: not batched");
        drop(w);
        drop(guard);
        t.join().unwrap();
    }
}
