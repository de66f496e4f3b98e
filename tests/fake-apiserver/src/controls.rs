//! Test controls: the request and write logs, and fault injection rules.

use std::fmt;

/// The Kubernetes verb of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
}

impl Verb {
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Patch | Self::Delete
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
        };
        f.write_str(name)
    }
}

/// One request to a resource endpoint (discovery requests are not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub verb: Verb,
    pub path: String,
    /// The resource's plural name, e.g. `deployments`.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The HTTP status answered (200 for a watch that was started).
    pub status: u16,
}

/// One successful write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub verb: Verb,
    pub path: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub subresource: Option<String>,
    /// False when the write was a no-op (the stored object did not change).
    pub changed: bool,
}

/// Fails the next `times` requests matching a verb and/or resource with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub(crate) verb: Option<Verb>,
    pub(crate) resource: Option<String>,
    pub(crate) status: u16,
    pub(crate) remaining: usize,
}

impl FaultRule {
    /// One failure with `status` (409, 429, 500, 503, ...) for any request.
    pub fn status(status: u16) -> Self {
        Self {
            verb: None,
            resource: None,
            status,
            remaining: 1,
        }
    }

    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Only requests to this resource (plural name, e.g. `deployments`).
    pub fn resource(mut self, plural: impl Into<String>) -> Self {
        self.resource = Some(plural.into());
        self
    }

    pub fn times(mut self, times: usize) -> Self {
        self.remaining = times;
        self
    }

    pub(crate) fn matches(&self, verb: Verb, resource: &str) -> bool {
        self.remaining > 0
            && self.verb.is_none_or(|wanted| wanted == verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|wanted| wanted == resource)
    }
}

/// Everything the test side records or arms.
#[derive(Debug, Default)]
pub struct Controls {
    pub requests: Vec<RequestRecord>,
    pub writes: Vec<WriteRecord>,
    pub faults: Vec<FaultRule>,
}

impl Controls {
    /// Consumes one matching fault, returning its status code.
    pub fn take_fault(&mut self, verb: Verb, resource: &str) -> Option<u16> {
        let rule = self
            .faults
            .iter_mut()
            .find(|rule| rule.matches(verb, resource))?;
        rule.remaining -= 1;
        let status = rule.status;
        self.faults.retain(|rule| rule.remaining > 0);
        Some(status)
    }
}
