//! The usage batcher: one background task that writes token usage (requests of unlimited tokens,
//! cache hits, and the unused part of quota leases handed back) to the store in batches, never on
//! the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use llm_proxy_store::{Store, TokenHash, UsageDelta};
use tokio::sync::mpsc;

use super::lease::QuotaLeases;

/// Usage updates are written at least this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// ... or as soon as this many accumulated.
const FLUSH_BATCH: usize = 100;
/// Expired leases are looked for (and their unused part returned) this often.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Merges usage deltas per token and writes them in one store call, at least every
/// [`FLUSH_INTERVAL`] or once [`FLUSH_BATCH`] arrived; every [`SWEEP_INTERVAL`] sweeps the expired
/// quota leases and queues their unused part. Flushes what is left and ends when the channel closes.
pub(super) async fn run_usage_batcher(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<UsageDelta>,
    leases: Arc<QuotaLeases>,
) {
    enum Wake {
        Received(UsageDelta),
        Tick,
        Sweep,
        Closed,
    }
    let mut pending: HashMap<TokenHash, UsageDelta> = HashMap::new();
    let mut received_since_flush = 0usize;
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeper = tokio::time::interval(SWEEP_INTERVAL);
    sweeper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = tokio::select! {
            received = receiver.recv() => received.map_or(Wake::Closed, Wake::Received),
            _ = ticker.tick() => Wake::Tick,
            _ = sweeper.tick() => Wake::Sweep,
        };
        let (flush, closed) = match wake {
            Wake::Received(delta) => {
                received_since_flush += 1;
                merge(&mut pending, delta);
                (received_since_flush >= FLUSH_BATCH, false)
            }
            Wake::Tick => (true, false),
            Wake::Sweep => {
                return_unused(&mut pending, leases.sweep(Instant::now(), false));
                (false, false)
            }
            Wake::Closed => {
                return_unused(&mut pending, leases.sweep(Instant::now(), true));
                (true, true)
            }
        };
        if flush && !pending.is_empty() {
            let batch: Vec<UsageDelta> = pending.drain().map(|(_, delta)| delta).collect();
            received_since_flush = 0;
            if let Err(err) = store.record_usage(&batch).await {
                tracing::warn!(error = %err, tokens = batch.len(), "usage batch not recorded");
            }
        }
        if closed {
            return;
        }
    }
}

fn return_unused(pending: &mut HashMap<TokenHash, UsageDelta>, unused: Vec<(TokenHash, i64)>) {
    for (hash, count) in unused {
        merge(pending, give_back(hash, count));
    }
}

/// The usage delta that returns `unused` reserved requests of a token.
pub(super) fn give_back(hash: TokenHash, unused: i64) -> UsageDelta {
    UsageDelta {
        hash,
        requests: -unused,
        cache_hits: 0,
        last_used_at: Utc::now(),
    }
}

fn merge(pending: &mut HashMap<TokenHash, UsageDelta>, delta: UsageDelta) {
    match pending.get_mut(&delta.hash) {
        Some(existing) => {
            existing.requests += delta.requests;
            existing.cache_hits += delta.cache_hits;
            existing.last_used_at = existing.last_used_at.max(delta.last_used_at);
        }
        None => {
            pending.insert(delta.hash.clone(), delta);
        }
    }
}
