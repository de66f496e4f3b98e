//! Reading the event stream as one consumer of a consumer group.
//!
//! Order of work, each [`StreamConsumer::next_batch`] call returning at most `read_count` entries:
//! 1. first, this consumer's own pending entries (`XREADGROUP … 0`), left by an earlier run of the
//!    same consumer name that died before acknowledging;
//! 2. entries of any consumer idle for at least `claim_idle` (`XAUTOCLAIM`), checked when a read
//!    comes back empty and at least once per `claim_idle` under steady load;
//! 3. new entries (`XREADGROUP … BLOCK <block> … >`).
//!
//! Nothing is acknowledged here: the caller calls [`StreamConsumer::ack`] once the backend has
//! accepted the events (at-least-once delivery).

use std::time::{Duration, Instant};

use redis::Value;

use crate::event::InstrumentationEvent;
use crate::settings::StreamSettings;

/// Margin added to the `BLOCK` time for the consumer's Redis response timeout.
pub const CONSUMER_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// A failed Redis operation of the consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Redis could not be reached or refused the command.
    #[error("redis {operation} failed: {source}")]
    Redis {
        /// The command that failed.
        operation: &'static str,
        /// The client's error.
        source: redis::RedisError,
    },
    /// Redis answered with a shape the consumer does not understand.
    #[error("unexpected reply to {operation}")]
    UnexpectedReply {
        /// The command whose reply was not understood.
        operation: &'static str,
    },
}

/// How a returned entry reached this consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Read for the first time.
    New,
    /// Already delivered before (own pending list or claimed from another consumer): the backend
    /// may have seen it already.
    Redelivered,
}

/// One stream entry handed to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// The stream id, needed for [`StreamConsumer::ack`].
    pub id: String,
    /// Whether this is a redelivery.
    pub delivery: Delivery,
    /// The decoded event, or why it could not be decoded (ack and count such entries).
    pub payload: Result<InstrumentationEvent, MalformedEntry>,
}

/// Why a stream entry is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedEntry {
    /// No `data` field (or the entry was trimmed away while pending).
    #[error("entry has no data field")]
    MissingData,
    /// `data` is not an [`InstrumentationEvent`].
    #[error("entry data is not an event: {0}")]
    InvalidJson(String),
}

/// Consumer-group settings for one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Stream key.
    pub stream_key: String,
    /// Consumer group.
    pub group: String,
    /// This consumer's name within the group.
    pub consumer: String,
    /// Entries per read.
    pub read_count: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// Idle time after which another consumer's pending entries are taken over.
    pub claim_idle: Duration,
}

impl ConsumerSettings {
    /// Settings from the environment-derived stream settings, with `consumer` as the name.
    pub fn new(stream: &StreamSettings, consumer: String) -> Self {
        Self {
            stream_key: stream.stream_key.clone(),
            group: stream.group.clone(),
            consumer,
            read_count: stream.read_count,
            block: stream.block,
            claim_idle: stream.claim_idle,
        }
    }
}

/// One consumer of the group; holds the process's connection manager.
pub struct StreamConsumer {
    connection: redis::aio::ConnectionManager,
    settings: ConsumerSettings,
    /// Where the next read of our own pending list starts; `None` once it is drained.
    own_pending_cursor: Option<String>,
    /// Where the next XAUTOCLAIM scan starts.
    claim_cursor: String,
    last_claim: Option<Instant>,
}

impl StreamConsumer {
    /// A consumer using `connection` (whose response timeout must exceed `settings.block`).
    pub fn new(connection: redis::aio::ConnectionManager, settings: ConsumerSettings) -> Self {
        Self {
            connection,
            settings,
            own_pending_cursor: Some("0".to_string()),
            claim_cursor: "0-0".to_string(),
            last_claim: None,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// `XGROUP CREATE <stream> <group> 0 MKSTREAM`; an existing group (`BUSYGROUP`) is fine.
    pub async fn ensure_group(&mut self) -> Result<(), ConsumerError> {
        let result = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.stream_key)
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async::<()>(&mut self.connection)
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(source) => Err(ConsumerError::Redis {
                operation: "XGROUP CREATE",
                source,
            }),
        }
    }

    /// The next entries for this consumer (possibly none after `block`), see the module docs.
    pub async fn next_batch(&mut self) -> Result<Vec<StreamEntry>, ConsumerError> {
        if let Some(cursor) = self.own_pending_cursor.clone() {
            let entries = self.read_group(&cursor, None).await?;
            match entries.last() {
                Some(last) => {
                    self.own_pending_cursor = Some(last.0.clone());
                    return Ok(mark(entries, Delivery::Redelivered));
                }
                None => self.own_pending_cursor = None,
            }
        }
        if self.claim_due() {
            let claimed = self.claim_idle().await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        let entries = self.read_group(">", Some(self.settings.block)).await?;
        if entries.is_empty() {
            return self.claim_idle().await;
        }
        Ok(mark(entries, Delivery::New))
    }

    /// `XACK`s the given entry ids.
    pub async fn ack(&mut self, ids: &[String]) -> Result<(), ConsumerError> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XACK")
            .arg(&self.settings.stream_key)
            .arg(&self.settings.group)
            .arg(ids)
            .query_async::<u64>(&mut self.connection)
            .await
            .map(|_| ())
            .map_err(|source| ConsumerError::Redis {
                operation: "XACK",
                source,
            })
    }

    /// Entries delivered to the group but not yet acknowledged (`XPENDING` summary count).
    pub async fn pending_count(&mut self) -> Result<u64, ConsumerError> {
        let reply = redis::cmd("XPENDING")
            .arg(&self.settings.stream_key)
            .arg(&self.settings.group)
            .query_async::<Value>(&mut self.connection)
            .await
            .map_err(|source| ConsumerError::Redis {
                operation: "XPENDING",
                source,
            })?;
        match reply {
            Value::Array(items) => match items.first() {
                Some(Value::Int(count)) => Ok(u64::try_from(*count).unwrap_or(0)),
                _ => Err(ConsumerError::UnexpectedReply {
                    operation: "XPENDING",
                }),
            },
            _ => Err(ConsumerError::UnexpectedReply {
                operation: "XPENDING",
            }),
        }
    }

    fn claim_due(&self) -> bool {
        self.last_claim
            .is_none_or(|at| at.elapsed() >= self.settings.claim_idle)
    }

    async fn read_group(
        &mut self,
        id: &str,
        block: Option<Duration>,
    ) -> Result<Vec<RawEntry>, ConsumerError> {
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(self.settings.read_count);
        if let Some(block) = block {
            command.arg("BLOCK").arg(duration_millis(block));
        }
        command
            .arg("STREAMS")
            .arg(&self.settings.stream_key)
            .arg(id);
        let reply = command
            .query_async::<Value>(&mut self.connection)
            .await
            .map_err(|source| ConsumerError::Redis {
                operation: "XREADGROUP",
                source,
            })?;
        parse_read_reply(reply).ok_or(ConsumerError::UnexpectedReply {
            operation: "XREADGROUP",
        })
    }

    /// `XAUTOCLAIM <stream> <group> <consumer> <claim_idle> <cursor> COUNT <n>`.
    async fn claim_idle(&mut self) -> Result<Vec<StreamEntry>, ConsumerError> {
        self.last_claim = Some(Instant::now());
        let reply = redis::cmd("XAUTOCLAIM")
            .arg(&self.settings.stream_key)
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg(duration_millis(self.settings.claim_idle))
            .arg(&self.claim_cursor)
            .arg("COUNT")
            .arg(self.settings.read_count)
            .query_async::<Value>(&mut self.connection)
            .await
            .map_err(|source| ConsumerError::Redis {
                operation: "XAUTOCLAIM",
                source,
            })?;
        let unexpected = ConsumerError::UnexpectedReply {
            operation: "XAUTOCLAIM",
        };
        let Value::Array(mut parts) = reply else {
            return Err(unexpected);
        };
        if parts.len() < 2 {
            return Err(unexpected);
        }
        let claimed = parts.swap_remove(1);
        let next_cursor = parts
            .first()
            .and_then(text)
            .ok_or(ConsumerError::UnexpectedReply {
                operation: "XAUTOCLAIM",
            })?;
        self.claim_cursor = next_cursor;
        let entries = parse_entries(claimed).ok_or(ConsumerError::UnexpectedReply {
            operation: "XAUTOCLAIM",
        })?;
        if !entries.is_empty() {
            tracing::info!(count = entries.len(), consumer = %self.settings.consumer, "claimed idle pending entries");
        }
        Ok(mark(entries, Delivery::Redelivered))
    }
}

/// A stream id with its decoded payload.
type RawEntry = (String, Result<InstrumentationEvent, MalformedEntry>);

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn mark(entries: Vec<RawEntry>, delivery: Delivery) -> Vec<StreamEntry> {
    entries
        .into_iter()
        .map(|(id, payload)| StreamEntry {
            id,
            delivery,
            payload,
        })
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// `XREADGROUP` reply: nil (timeout) or `[[key, entries]]` (RESP2) / `{key: entries}` (RESP3).
fn parse_read_reply(reply: Value) -> Option<Vec<RawEntry>> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Some(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => Some(pair.swap_remove(1)),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        _ => return None,
    };
    let mut all = Vec::new();
    for entries in streams {
        all.extend(parse_entries(entries)?);
    }
    Some(all)
}

/// A list of `[id, [field, value, …] | nil]` entries. A nil field list is a pending entry whose
/// data was trimmed from the stream.
fn parse_entries(entries: Value) -> Option<Vec<RawEntry>> {
    let Value::Array(entries) = entries else {
        return if entries == Value::Nil {
            Some(Vec::new())
        } else {
            None
        };
    };
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            continue;
        };
        let mut parts = parts.into_iter();
        let Some(id) = parts.next().as_ref().and_then(text) else {
            continue;
        };
        let payload = match parts.next() {
            Some(Value::Array(fields)) => decode_fields(&fields),
            Some(Value::Map(pairs)) => {
                let fields: Vec<Value> = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                decode_fields(&fields)
            }
            _ => Err(MalformedEntry::MissingData),
        };
        parsed.push((id, payload));
    }
    Some(parsed)
}

fn decode_fields(fields: &[Value]) -> Result<InstrumentationEvent, MalformedEntry> {
    let data = fields
        .chunks_exact(2)
        .find(|pair| pair.first().and_then(text).as_deref() == Some("data"))
        .and_then(|pair| pair.get(1))
        .ok_or(MalformedEntry::MissingData)?;
    let bytes = match data {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(text) => text.as_bytes(),
        _ => {
            return Err(MalformedEntry::InvalidJson(
                "data is not a string".to_string(),
            ));
        }
    };
    serde_json::from_slice(bytes).map_err(|error| MalformedEntry::InvalidJson(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn parses_events_malformed_and_trimmed_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("stream"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("data"), bulk(r#"{"RequestID":"a"}"#)]),
                ]),
                Value::Array(vec![
                    bulk("2-0"),
                    Value::Array(vec![bulk("data"), bulk("not json")]),
                ]),
                Value::Array(vec![
                    bulk("3-0"),
                    Value::Array(vec![bulk("other"), bulk("x")]),
                ]),
                Value::Array(vec![bulk("4-0"), Value::Nil]),
            ]),
        ])]);
        let entries = parse_read_reply(reply).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].1.as_ref().unwrap().request_id, "a");
        assert!(matches!(entries[1].1, Err(MalformedEntry::InvalidJson(_))));
        assert_eq!(entries[2].1, Err(MalformedEntry::MissingData));
        assert_eq!(entries[3].1, Err(MalformedEntry::MissingData));
        assert_eq!(parse_read_reply(Value::Nil).unwrap(), Vec::new());
        assert!(parse_read_reply(Value::Int(1)).is_none());
    }
}
