//! The closed word lists of the contract and their typed values: the event bus, the log level and
//! format, the database driver, the HTTP cache backend and the dispatcher's service.
//!
//! One case rule for all of them: a value is trimmed and matched in any case (`Redis-Streams` is
//! `redis-streams`), so every spelling the server accepted before stays accepted everywhere.

use std::fmt;

/// A typed value spelled as one of a closed list of words.
pub trait Keyword: Copy + Sized + 'static {
    /// Every accepted spelling, lowercase; a value's first spelling is its canonical name.
    const NAMES: &'static [&'static str];

    /// Parses a spelling (trimmed, any case).
    fn parse(raw: &str) -> Result<Self, String>;

    /// The canonical name.
    fn as_str(self) -> &'static str;
}

/// `expected in-memory, redis-streams or redis`.
fn expected_one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => format!("expected {last}"),
        Some((last, rest)) => format!("expected {} or {last}", rest.join(", ")),
        None => "expected nothing".to_owned(),
    }
}

macro_rules! keyword {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$variant_doc:meta])* $variant:ident = $spelling:literal $(| $alias:literal)* ),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_doc])* $variant, )*
        }

        impl Keyword for $name {
            const NAMES: &'static [&'static str] = &[ $( $spelling, $( $alias, )* )* ];

            fn parse(raw: &str) -> Result<Self, String> {
                match raw.trim().to_ascii_lowercase().as_str() {
                    $( $spelling $(| $alias)* => Ok(Self::$variant), )*
                    _ => Err(expected_one_of(Self::NAMES)),
                }
            }

            fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $spelling, )*
                }
            }
        }

        impl $name {
            /// Parses a spelling (trimmed, any case); see [`Keyword`].
            pub fn parse(raw: &str) -> Result<Self, String> {
                <Self as Keyword>::parse(raw)
            }

            /// The canonical name.
            pub fn as_str(self) -> &'static str {
                <Self as Keyword>::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword! {
    /// Which event bus carries instrumentation events (`LLM_PROXY_EVENT_BUS`).
    EventBusKind {
        /// In-process fan-out; nothing crosses process boundaries.
        InMemory = "in-memory",
        /// A Redis stream shared by the proxies and the dispatchers (`redis` is the chart's alias).
        RedisStreams = "redis-streams" | "redis",
    }
}

keyword! {
    /// The least severe log level written (`LOG_LEVEL`).
    LogLevel {
        Debug = "debug",
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
}

keyword! {
    /// How log lines are written (`LOG_FORMAT`).
    LogFormat {
        /// One JSON object per line.
        Json = "json",
        /// Human-readable text.
        Text = "text",
    }
}

keyword! {
    /// The database of the server (`DB_DRIVER`).
    DbDriver {
        /// A SQLite file at `DATABASE_PATH`.
        Sqlite = "sqlite",
        /// PostgreSQL at `DATABASE_URL`.
        Postgres = "postgres",
    }
}

keyword! {
    /// Where the HTTP response cache lives (`HTTP_CACHE_BACKEND`).
    HttpCacheBackend {
        /// In the process, bounded by `HTTP_CACHE_MAX_BYTES`.
        InMemory = "in-memory",
        /// In Redis, shared by the replicas.
        Redis = "redis",
    }
}

keyword! {
    /// The backend the dispatcher ships events to (`DISPATCHER_SERVICE`).
    DispatcherService {
        /// Append JSONL to a file.
        File = "file",
        /// POST batches to Lunary.
        Lunary = "lunary",
        /// POST single events to Helicone.
        Helicone = "helicone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<K: Keyword + PartialEq + fmt::Debug>() {
        for name in K::NAMES {
            assert_eq!(*name, name.to_ascii_lowercase(), "spellings are lowercase");
            let value = K::parse(name).unwrap_or_else(|reason| panic!("{name}: {reason}"));
            assert_eq!(K::parse(value.as_str()), Ok(value), "{name}");
            assert_eq!(K::parse(&name.to_ascii_uppercase()), Ok(value), "{name}");
        }
        let reason = K::parse("bogus").err().unwrap_or_default();
        for name in K::NAMES {
            assert!(reason.contains(name), "{reason} should list {name}");
        }
    }

    #[test]
    fn every_spelling_parses_in_any_case_and_the_error_lists_them_all() {
        round_trips::<EventBusKind>();
        round_trips::<LogLevel>();
        round_trips::<LogFormat>();
        round_trips::<DbDriver>();
        round_trips::<HttpCacheBackend>();
        round_trips::<DispatcherService>();
    }

    #[test]
    fn the_event_bus_keeps_the_redis_alias_and_refuses_others() {
        assert_eq!(EventBusKind::parse("in-memory"), Ok(EventBusKind::InMemory));
        assert_eq!(
            EventBusKind::parse(" Redis-Streams "),
            Ok(EventBusKind::RedisStreams)
        );
        assert_eq!(EventBusKind::parse("redis"), Ok(EventBusKind::RedisStreams));
        assert_eq!(EventBusKind::RedisStreams.as_str(), "redis-streams");
        assert_eq!(
            EventBusKind::parse("kafka"),
            Err("expected in-memory, redis-streams or redis".to_owned())
        );
        for refused in ["memory", "inmemory", "redis-stream", ""] {
            assert!(EventBusKind::parse(refused).is_err(), "{refused:?}");
        }
    }
}
