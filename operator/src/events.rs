//! Publishing Events (events.k8s.io) about a resource; a failure to publish is logged, never fatal.
//!
//! Each Event goes through a `Recorder` of its own. kube's `Recorder` remembers every Event it
//! sent for six minutes to fold repeats into a series; the operator publishes an Event only when
//! something changed (a transition, a write, a new error), so a series would hold one Event, and
//! that memory — about 6 MB per 1,000 objects after a burst — would buy nothing.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Longest Event note the API server accepts.
const MAX_NOTE_CHARS: usize = 1024;

/// Publishes Events as one reporter (`reportingController`/`reportingInstance`).
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    reporter: Reporter,
}

impl Publisher {
    /// A publisher writing through `client` as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self { client, reporter }
    }

    /// Publishes one Event about `reference`.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note.chars().take(MAX_NOTE_CHARS).collect()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish Event");
        }
    }
}
