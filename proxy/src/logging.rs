//! Process logging: `LOG_LEVEL`, `LOG_FORMAT` (`json` or human `text`) and `LOG_FILE` (append).
//!
//! Request logs carry `request_id`, `method`, `path` (without the query string), `status` and
//! `duration_ms`. Secrets cannot reach a log line by accident: tokens, keys and passwords are held in
//! types whose `Debug` is redacted and that have no `Display`.
//!
//! Lines are formatted on the calling thread but written by a dedicated writer thread through a
//! bounded queue ([`QUEUE_LINES`]), so a request never waits for stdout or the log file. When the
//! queue is full (the sink cannot keep up) a line is dropped and counted, never blocked on; the
//! count is reported on stderr when the process ends. The writer drains the queue every
//! [`WRITE_INTERVAL`] rather than being woken per line (on a busy core a wake-up per request costs
//! more than the write), so a line reaches the sink at most that late; [`LogGuard`] drains the
//! queue at exit.
//!
//! JSON lines are written by [`JsonLine`] (`timestamp`, `level`, then the event's fields, the same
//! keys as tracing-subscriber's flattened JSON format): one line per `/v1` request made its generic
//! formatter (a serde map per event, a `Debug` round trip per field) a visible part of the request
//! path's cost.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::clock::{Precision, Rfc3339};

use crate::config::{LogFormat, LogLevel, LoggingConfig};

/// Lines waiting for the writer thread before new ones are dropped.
pub const QUEUE_LINES: usize = 16_384;
/// How often the writer thread drains the queue.
pub const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open LOG_FILE {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the log writer thread: {0}")]
    Thread(std::io::Error),
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Keeps the writer thread alive; dropping it writes every queued line and stops the thread.
#[must_use = "dropping the guard stops logging"]
pub struct LogGuard {
    queue: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The global subscriber keeps its own sender; closing ours and sending an empty line marks
        // the end for the writer thread.
        if let Some(queue) = self.queue.take() {
            let _ = queue.send(Vec::new());
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("llm-proxy: {dropped} log lines dropped (the log sink could not keep up)");
        }
    }
}

/// Hands each formatted line to the writer thread.
#[derive(Clone)]
struct QueueWriter {
    queue: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// One event's bytes, sent when the formatter drops it.
struct LineBuffer {
    line: Vec<u8>,
    target: QueueWriter,
}

impl Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.target.queue.try_send(line)
        {
            self.target.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer {
            line: Vec::with_capacity(256),
            target: self.clone(),
        }
    }
}

/// Writes queued lines until the empty end-of-log line arrives (or every sender is gone), draining
/// the queue and flushing every [`WRITE_INTERVAL`].
fn write_lines(receiver: Receiver<Vec<u8>>, sink: Box<dyn Write + Send>) {
    let mut sink = BufWriter::with_capacity(64 * 1024, sink);
    loop {
        loop {
            match receiver.try_recv() {
                Ok(line) if line.is_empty() => {
                    let _ = sink.flush();
                    return;
                }
                Ok(line) => {
                    let _ = sink.write_all(&line);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = sink.flush();
                    return;
                }
            }
        }
        let _ = sink.flush();
        std::thread::sleep(WRITE_INTERVAL);
    }
}

/// Installs the global subscriber; keep the guard until the process ends.
pub fn init(config: &LoggingConfig) -> Result<LogGuard, LoggingError> {
    let level = match config.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let sink: Box<dyn Write + Send> = match &config.file {
        None => Box::new(io::stdout()),
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.display().to_string(),
                    source,
                })?,
        ),
    };
    let (queue, receiver) = std::sync::mpsc::sync_channel(QUEUE_LINES);
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(receiver, sink))
        .map_err(LoggingError::Thread)?;
    let dropped = Arc::new(AtomicU64::new(0));
    let make_writer = QueueWriter {
        queue: queue.clone(),
        dropped: dropped.clone(),
    };
    let guard = LogGuard {
        queue: Some(queue),
        writer: Some(writer),
        dropped,
    };

    // Dependencies log at warn and above only, so debug output stays about the proxy.
    let filter = EnvFilter::new(format!("warn,llm_proxy={level}"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(make_writer);
    let result = match config.format {
        LogFormat::Json => builder.event_format(JsonLine).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(guard)
}

/// Formats an event as one JSON object: `timestamp` (RFC 3339, microseconds), `level`, then the
/// event's fields in the order given (`message` first for `info!(..., "text")`). Spans are not
/// written: the proxy opens none.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(Rfc3339::now(Precision::Micros).as_str())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(event.metadata().level().as_str())?;
        writer.write_char('"')?;
        let mut fields = JsonFields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFields<'w, 'a> {
    out: &'w mut Writer<'a>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn field(&mut self, field: &Field, write_value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.out.write_str(",\"")?;
            JsonEscaped(&mut *self.out).write_str(field.name())?;
            self.out.write_str("\":")?;
            write_value(&mut *self.out)
        })();
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| {
            out.write_char('"')?;
            JsonEscaped(&mut *out).write_str(value)?;
            out.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_char('"')?;
            write!(JsonEscaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Escapes what it is given as the inside of a JSON string.
struct JsonEscaped<'w, W: fmt::Write>(&'w mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Almost every value needs no escape: one branch-free pass over the bytes (which the
        // compiler vectorises) decides, instead of a per-byte match.
        let needs_escape = text.bytes().fold(false, |found, byte| {
            found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
        });
        if !needs_escape {
            return self.0.write_str(text);
        }
        let mut plain_from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&text[plain_from..at])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain_from = at + 1;
        }
        self.0.write_str(&text[plain_from..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink the test can read after the writer thread is done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_json_objects_with_escaped_fields() {
        let sink = Shared::default();
        let make_writer = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(make_writer)
            .event_format(JsonLine)
            .finish();
        let id = uuid::Uuid::nil();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = %id,
                path = "/v1/\"quoted\"\\back\nline\u{1}",
                status = 200_u16,
                delta = -3_i64,
                ok = true,
                ratio = 0.5,
                outcome = ?Some("x"),
                "request"
            );
            tracing::warn!("second {}", 2);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert!(
            chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).is_ok(),
            "{text}"
        );
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "request");
        assert_eq!(first["request_id"], id.to_string());
        assert_eq!(first["path"], "/v1/\"quoted\"\\back\nline\u{1}");
        assert_eq!(first["status"], 200);
        assert_eq!(first["delta"], -3);
        assert_eq!(first["ok"], true);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["outcome"], "Some(\"x\")");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["message"], "second 2");
    }

    #[test]
    fn lines_arrive_in_order_and_a_full_queue_drops_and_counts() {
        let (queue, receiver) = std::sync::mpsc::sync_channel(2);
        let target = QueueWriter {
            queue: queue.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for text in ["one\n", "two\n", "three\n"] {
            let mut line = target.make_writer();
            line.write_all(text.as_bytes()).unwrap();
        }
        assert_eq!(
            target.dropped.load(Ordering::Relaxed),
            1,
            "the third line found the queue full"
        );
        let sink = Shared::default();
        let writer = {
            let sink = sink.clone();
            std::thread::spawn(move || write_lines(receiver, Box::new(sink)))
        };
        queue.send(Vec::new()).unwrap();
        writer.join().unwrap();
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"one\ntwo\n");
    }
}
