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
//! JSON lines are written by [`JsonLayer`] (`timestamp`, `level`, then the event's fields, the same
//! keys as tracing-subscriber's flattened JSON format) straight into the queued line: one line per
//! `/v1` request made tracing-subscriber's formatters a visible part of the request path's cost
//! (its JSON formatter: a serde map per event and a `Debug` round trip per field; its fmt layer
//! with our formatter: a thread-local buffer copied into the line, a dynamic call per write and
//! `fmt` for every number, about a fifth of the proxy's own instructions per request).

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{self, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

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
        if !self.line.is_empty() {
            self.target.send(std::mem::take(&mut self.line));
        }
    }
}

impl QueueWriter {
    /// Queues a line, or drops and counts it when the queue is full.
    fn send(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(line)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
    let logs = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Json => logs
            .with(JsonLayer {
                target: make_writer,
            })
            .try_init(),
        LogFormat::Text => logs
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(false)
                    .with_writer(make_writer),
            )
            .try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(guard)
}

/// Formats each event as one JSON object, `timestamp` (RFC 3339, microseconds), `level`, then the
/// event's fields in the order given (`message` first for `info!(..., "text")`), straight into the
/// line it queues. Spans are not written: the proxy opens none.
struct JsonLayer {
    target: QueueWriter,
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: layer::Context<'_, S>) {
        self.target.send(json_line(event));
    }
}

fn json_line(event: &Event<'_>) -> Vec<u8> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"timestamp\":\"");
    line.extend_from_slice(Rfc3339::now(Precision::Micros).as_str().as_bytes());
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(event.metadata().level().as_str().as_bytes());
    line.push(b'"');
    event.record(&mut JsonFields(&mut line));
    line.extend_from_slice(b"}\n");
    line
}

/// Writes each field as `,"name":value`.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.0.extend_from_slice(b",\"");
        push_escaped(self.0, field.name());
        self.0.extend_from_slice(b"\":");
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        self.0.push(b'"');
        push_escaped(self.0, value);
        self.0.push(b'"');
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_decimal(self.0, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        if value < 0 {
            self.0.push(b'-');
        }
        push_decimal(self.0, value.unsigned_abs());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.0
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.extend_from_slice(b"null");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        self.0.push(b'"');
        let _ = fmt::Write::write_fmt(&mut JsonEscaped(&mut *self.0), format_args!("{value:?}"));
        self.0.push(b'"');
    }
}

/// Decimal digits of `value`, without going through `fmt` (which costs several times more).
fn push_decimal(line: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    line.extend_from_slice(&digits[start..]);
}

/// `text` as the inside of a JSON string.
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    for byte in text.bytes() {
        match byte {
            b'"' => line.extend_from_slice(b"\\\""),
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(line, "\\u{byte:04x}");
            }
            _ => line.push(byte),
        }
    }
}

/// Whether `bytes` hold a control character, `"` or `\\`. Almost no value does, so this decides
/// in one pass, eight bytes per step (SWAR: a byte below 0x20, or equal to one of the two, sets
/// the high bit of its lane in the masks below; the test is exact).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let (words, tail) = bytes.as_chunks::<8>();
    let in_words = words.iter().any(|word| {
        let word = u64::from_le_bytes(*word);
        word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0
            || has_zero_byte(word ^ (ONES * u64::from(b'"')))
            || has_zero_byte(word ^ (ONES * u64::from(b'\\')))
    });
    in_words
        || tail
            .iter()
            .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

/// Escapes formatted output (a `Debug` value) into a line.
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
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
        let (queue, receiver) = std::sync::mpsc::sync_channel(8);
        let target = QueueWriter {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let subscriber = tracing_subscriber::registry().with(JsonLayer { target });
        let id = uuid::Uuid::nil();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = %id,
                path = "/v1/\"quoted\"\\back\nline\u{1}",
                status = 200_u16,
                delta = -3_i64,
                big = u64::MAX,
                zero = 0_u64,
                most_negative = i64::MIN,
                ok = true,
                ratio = 0.5,
                outcome = ?Some("x"),
                "request"
            );
            tracing::warn!("second {}", 2);
        });
        let text = String::from_utf8(receiver.try_iter().flatten().collect()).unwrap();
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
        assert_eq!(first["big"], u64::MAX);
        assert_eq!(first["zero"], 0);
        assert_eq!(first["most_negative"], i64::MIN);
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        assert_eq!(first["ok"], true);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["outcome"], "Some(\"x\")");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["message"], "second 2");
    }

    #[test]
    fn the_escape_check_finds_every_byte_that_needs_escaping_at_every_position() {
        for byte in 0..=u8::MAX {
            let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
            for position in 0..19 {
                let mut text = vec![b'a'; 19];
                text[position] = byte;
                assert_eq!(needs_escape(&text), expected, "{byte:#x} at {position}");
            }
        }
        assert!(!needs_escape("é ✓ plain text ~ 0x7f\u{7f}".as_bytes()));
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
