//! The publisher's durable overflow: a bounded local file of events, one JSON document per line.
//!
//! The Redis writer appends here (never the request path) when Redis does not accept a batch or a
//! write is slow, and replays the file in order, oldest first, before any newer event; once
//! everything in it is written the file is truncated. A spool left by a previous process is
//! replayed when the publisher starts. A line cut short by a crash mid-write (no final newline) is
//! removed at start-up and counted as dropped. Lines are written to the page cache, not fsynced:
//! a process crash loses nothing that was appended, a machine crash may.
//!
//! Bound: the file never grows beyond `max_bytes` (space of replayed lines is reclaimed when the
//! whole file has been replayed); events beyond it are dropped, counted, and reported by at most
//! one warning line per [`DROP_REPORT_INTERVAL`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

/// At most one "dropping" warning per interval.
pub const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Where the spool lives and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSettings {
    /// `LLM_PROXY_EVENT_SPOOL_PATH`.
    pub path: PathBuf,
    /// `LLM_PROXY_EVENT_SPOOL_MAX_BYTES`.
    pub max_bytes: u64,
}

/// The spool could not be opened or checked at start-up.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot use the event spool {path} (LLM_PROXY_EVENT_SPOOL_PATH; LLM_PROXY_EVENT_SPOOL_MAX_BYTES=0 turns it off): {source}"
)]
pub struct SpoolError {
    path: String,
    #[source]
    source: std::io::Error,
}

pub(crate) struct Spool {
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Start of the first line not yet written to Redis.
    read_at: u64,
    max_bytes: u64,
    dropped: Counter,
    unreported: u64,
    last_report: Option<Instant>,
    /// Warning lines emitted (for tests).
    reports: u64,
}

impl Spool {
    /// Opens (creating it and its directory) the spool; a torn last line is cut off and counted.
    pub(crate) fn open(settings: &SpoolSettings, dropped: Counter) -> Result<Self, SpoolError> {
        let error = |source| SpoolError {
            path: settings.path.display().to_string(),
            source,
        };
        if let Some(dir) = settings.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&settings.path)
            .map_err(error)?;
        let len = file.metadata().map_err(error)?.len();
        let whole = last_newline_end(&file, len).map_err(error)?;
        if whole < len {
            file.set_len(whole).map_err(error)?;
            dropped.inc();
            tracing::warn!(
                bytes = len - whole,
                "event spool: a torn last line (cut by a crash mid-write) was skipped"
            );
        }
        if whole > 0 {
            tracing::info!(
                bytes = whole,
                "event spool: replaying events left by the last run"
            );
        }
        Ok(Self {
            file,
            len: whole,
            read_at: 0,
            max_bytes: settings.max_bytes,
            dropped,
            unreported: 0,
            last_report: None,
            reports: 0,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.read_at >= self.len
    }

    /// Appends `lines` (JSON without newlines); those beyond the bound are dropped. Returns the
    /// end offset of what was appended.
    pub(crate) fn append(&mut self, lines: &[String]) -> u64 {
        for line in lines {
            let size = line.len() as u64 + 1;
            if self.len + size > self.max_bytes {
                self.drop_one("full");
                continue;
            }
            let mut record = Vec::with_capacity(line.len() + 1);
            record.extend_from_slice(line.as_bytes());
            record.push(b'\n');
            match self.file.write_all_at(&record, self.len) {
                Ok(()) => self.len += size,
                Err(_) => self.drop_one("write error"),
            }
        }
        self.len
    }

    /// Up to `max` lines from the oldest unwritten one, and the offset after them.
    pub(crate) fn read_batch(&self, max: usize) -> std::io::Result<(Vec<String>, u64)> {
        let mut handle = &self.file;
        handle.seek(SeekFrom::Start(self.read_at))?;
        let mut reader = BufReader::new(handle.take(self.len - self.read_at));
        let mut lines = Vec::with_capacity(max);
        let mut end = self.read_at;
        let mut buffer = Vec::new();
        while lines.len() < max {
            buffer.clear();
            let read = reader.read_until(b'\n', &mut buffer)?;
            if read == 0 || buffer.last() != Some(&b'\n') {
                break;
            }
            end += read as u64;
            buffer.pop();
            lines.push(String::from_utf8_lossy(&buffer).into_owned());
        }
        Ok((lines, end))
    }

    /// Marks everything before `end` as written; an all-written spool is truncated.
    pub(crate) fn commit(&mut self, end: u64) {
        self.read_at = end.min(self.len);
        if self.read_at >= self.len && self.file.set_len(0).is_ok() {
            self.len = 0;
            self.read_at = 0;
        }
    }

    /// Gives up on the unwritten rest (an unreadable spool), counting it as one drop.
    pub(crate) fn discard(&mut self) {
        self.drop_one("unreadable");
        self.commit(self.len);
    }

    fn drop_one(&mut self, reason: &'static str) {
        self.dropped.inc();
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_report
            .is_none_or(|last| now.duration_since(last) >= DROP_REPORT_INTERVAL)
        {
            tracing::warn!(
                dropped = self.unreported,
                reason,
                max_bytes = self.max_bytes,
                "event spool: dropping events beyond its bound"
            );
            self.unreported = 0;
            self.last_report = Some(now);
            self.reports += 1;
        }
    }

    #[cfg(test)]
    fn reports(&self) -> u64 {
        self.reports
    }
}

/// The length of the file's whole lines (up to and including its last newline).
fn last_newline_end(file: &File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buffer = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(name: &str, max_bytes: u64) -> SpoolSettings {
        let dir = std::env::temp_dir().join(format!("spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        SpoolSettings {
            path: dir.join("events.jsonl"),
            max_bytes,
        }
    }

    #[test]
    fn an_unusable_path_is_an_error_naming_the_variable() {
        let settings = SpoolSettings {
            path: PathBuf::from("/proc/no-such-dir/events.jsonl"),
            max_bytes: 100,
        };
        let err = Spool::open(&settings, Counter::default()).err().unwrap();
        assert!(
            err.to_string().contains("LLM_PROXY_EVENT_SPOOL_PATH"),
            "{err}"
        );
    }

    #[test]
    fn lines_come_back_in_order_and_a_replayed_spool_is_truncated() {
        let settings = settings("order", 1 << 20);
        let mut spool = Spool::open(&settings, Counter::default()).unwrap();
        let lines: Vec<String> = (0..5).map(|i| format!("{{\"n\":{i}}}")).collect();
        spool.append(&lines);
        let (first, end) = spool.read_batch(3).unwrap();
        assert_eq!(first, lines[..3]);
        spool.commit(end);
        let (rest, end) = spool.read_batch(10).unwrap();
        assert_eq!(rest, lines[3..]);
        spool.commit(end);
        assert!(spool.is_empty());
        assert_eq!(std::fs::metadata(&settings.path).unwrap().len(), 0);
    }

    #[test]
    fn a_spool_left_behind_is_replayed_and_its_torn_last_line_skipped() {
        let settings = settings("torn", 1 << 20);
        std::fs::create_dir_all(settings.path.parent().unwrap()).unwrap();
        std::fs::write(&settings.path, "{\"n\":0}\n{\"n\":1}\n{\"n\":").unwrap();
        let dropped = Counter::default();
        let mut spool = Spool::open(&settings, dropped.clone()).unwrap();
        assert_eq!(dropped.get(), 1);
        spool.append(&["{\"n\":2}".to_owned()]);
        let (lines, _) = spool.read_batch(10).unwrap();
        assert_eq!(lines, ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);
    }

    #[test]
    fn beyond_the_bound_events_are_dropped_counted_and_reported_once_per_interval() {
        let settings = settings("bound", 100);
        let dropped = Counter::default();
        let mut spool = Spool::open(&settings, dropped.clone()).unwrap();
        let line = "x".repeat(9); // 10 bytes with its newline
        let lines = vec![line; 25];
        spool.append(&lines);
        assert_eq!(dropped.get(), 15, "10 lines fit in 100 bytes");
        spool.append(&lines[..5]);
        assert_eq!(dropped.get(), 20);
        assert_eq!(spool.reports(), 1, "one warning line within the interval");
        assert!(std::fs::metadata(&settings.path).unwrap().len() <= 100);
        spool.last_report = Some(Instant::now() - DROP_REPORT_INTERVAL);
        spool.append(&lines[..1]);
        assert_eq!(spool.reports(), 2, "the next interval reports again");
    }
}
