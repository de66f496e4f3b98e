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

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|_| LoggingError::AlreadyInstalled)?;
    Ok(guard)
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
