//! The JSONL file sink: one payload per line, appended, fsynced once per chunk.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

use super::SendError;
use crate::transform::EventPayload;

/// Appends payloads to a file, creating it (not its directory) when missing.
pub struct FileBackend {
    path: PathBuf,
    file: Mutex<Option<tokio::fs::File>>,
}

impl FileBackend {
    /// A sink writing to `path`; the file is opened on the first write.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line per payload, then fsyncs. I/O errors are retryable (a full disk may clear).
    pub async fn append(&self, payloads: &[EventPayload]) -> Result<(), SendError> {
        let mut lines = Vec::new();
        for payload in payloads {
            serde_json::to_writer(&mut lines, payload)
                .map_err(|error| SendError::Permanent(format!("cannot encode event: {error}")))?;
            lines.push(b'\n');
        }
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            let opened = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
                .map_err(|error| {
                    SendError::Retryable(format!("cannot open {}: {error}", self.path.display()))
                })?;
            *guard = Some(opened);
        }
        let Some(file) = guard.as_mut() else {
            return Err(SendError::Retryable("event file is not open".to_string()));
        };
        let written = async {
            file.write_all(&lines).await?;
            file.flush().await?;
            file.sync_data().await
        }
        .await;
        if let Err(error) = written {
            // Reopen on the next attempt: the handle may point at a removed or broken file.
            *guard = None;
            return Err(SendError::Retryable(format!(
                "cannot write {}: {error}",
                self.path.display()
            )));
        }
        Ok(())
    }
}
