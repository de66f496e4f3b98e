//! A mock Helicone custom-log endpoint (`POST /custom/v1/log`), a
//! [`crate::lunary::RecordingReceiver`] with the same knobs and records; see there for deviations.

use crate::lunary::RecordingReceiver;

/// Path of Helicone's custom-log endpoint.
pub const HELICONE_LOG_PATH: &str = "/custom/v1/log";

/// A mock Helicone.
pub struct MockHelicone;

impl MockHelicone {
    /// Starts one on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<RecordingReceiver> {
        RecordingReceiver::start(HELICONE_LOG_PATH).await
    }
}
