//! [`ValueError`]: a variable holds a value its syntax refuses. The one error message of the
//! contract, shared by the server, the dispatcher and the operator.

/// A variable holds a value that cannot be used. It names the variable and shows the value, unless
/// the variable is secret or the value looks like it holds credentials (contains `@`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value may be shown.
    #[error("invalid {name}={value:?}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it held.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// The value is withheld.
    #[error("invalid {name} (value not shown): {reason}")]
    Withheld {
        /// The variable.
        name: &'static str,
        /// What is expected.
        reason: String,
    },
}

impl ValueError {
    /// An error for `name`; the value is withheld when the contract marks the variable secret or
    /// when it contains `@` (`user:password@host` pasted into a variable that is not secret).
    pub fn new(name: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let secret = crate::find(name).is_some_and(|var| var.secret);
        if secret || value.contains('@') {
            Self::withheld(name, reason)
        } else {
            Self::Invalid {
                name,
                value: value.to_owned(),
                reason: reason.into(),
            }
        }
    }

    /// An error for `name` that never shows the value.
    pub fn withheld(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Withheld {
            name,
            reason: reason.into(),
        }
    }

    /// The variable.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Invalid { name, .. } | Self::Withheld { name, .. } => name,
        }
    }

    /// What is expected, without the variable's name or value.
    pub fn reason(&self) -> &str {
        match self {
            Self::Invalid { reason, .. } | Self::Withheld { reason, .. } => reason,
        }
    }
}
