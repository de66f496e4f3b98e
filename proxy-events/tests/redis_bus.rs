//! The event bus against real Redis servers: the shared one from `scripts/test-services.sh`
//! (`LLM_PROXY_TEST_REDIS_URL`) and, for the outage test, a private `redis-server` started and
//! stopped here by PID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers outside #[test] fns

use std::collections::BTreeSet;
use std::time::Duration;

use llm_proxy_events::{
    ConsumerSettings, Delivery, EventPublisher, InstrumentationEvent, MalformedEntry,
    RedisSettings, SpoolSettings, StreamConsumer, StreamEntry, StreamTarget,
};
use llm_proxy_mocks::redis_server::PrivateRedis;

const WAIT: Duration = Duration::from_secs(20);

fn redis_url() -> String {
    std::env::var("LLM_PROXY_TEST_REDIS_URL").expect(
        "LLM_PROXY_TEST_REDIS_URL is not set: run the tests through scripts/test-services.sh",
    )
}

fn settings_for(url: &str) -> RedisSettings {
    RedisSettings::from_lookup(&|name| (name == llm_proxy_env::REDIS_URL).then(|| url.to_string()))
        .unwrap()
}

fn connection(url: &str) -> redis::aio::ConnectionManager {
    settings_for(url)
        .connection_manager(Duration::from_secs(10))
        .unwrap()
}

fn unique_key(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test-{test}-{}-{nanos}", std::process::id())
}

fn event(request_id: &str) -> InstrumentationEvent {
    InstrumentationEvent {
        request_id: request_id.to_string(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        status: 200,
        ..InstrumentationEvent::default()
    }
}

fn consumer(url: &str, key: &str, name: &str, claim_idle: Duration) -> StreamConsumer {
    StreamConsumer::new(
        connection(url),
        ConsumerSettings {
            stream_key: key.to_string(),
            group: "group".to_string(),
            consumer: name.to_string(),
            read_count: 100,
            block: Duration::from_millis(200),
            claim_idle,
        },
    )
}

/// Reads until `count` entries arrived (or fails after [`WAIT`]).
async fn read_entries(consumer: &mut StreamConsumer, count: usize) -> Vec<StreamEntry> {
    let mut entries = Vec::new();
    tokio::time::timeout(WAIT, async {
        while entries.len() < count {
            entries.extend(consumer.next_batch().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} entries arrived", entries.len()));
    entries
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

async fn xlen(url: &str, key: &str) -> u64 {
    let mut conn = connection(url);
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

fn request_ids(entries: &[StreamEntry]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|entry| entry.payload.as_ref().unwrap().request_id.clone())
        .collect()
}

#[tokio::test]
async fn published_events_reach_the_consumer_and_are_acked() {
    let url = redis_url();
    let key = unique_key("roundtrip");
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        100,
    );
    let mut consumer = consumer(&url, &key, "c1", Duration::from_secs(30));
    consumer.ensure_group().await.unwrap();
    consumer.ensure_group().await.unwrap(); // BUSYGROUP is not an error

    let mut sent = event("r1");
    sent.request_body = b"{\"model\":\"m\"}".to_vec();
    sent.duration = Duration::from_millis(12);
    publisher.publish(sent.clone());
    publisher.publish(event("r2"));
    publisher.publish(event("r3"));

    let entries = read_entries(&mut consumer, 3).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].payload.as_ref().unwrap(), &sent);
    assert!(entries.iter().all(|entry| entry.delivery == Delivery::New));
    assert_eq!(consumer.pending_count().await.unwrap(), 3);
    let ids: Vec<String> = entries.iter().map(|entry| entry.id.clone()).collect();
    consumer.ack(&ids).await.unwrap();
    assert_eq!(consumer.pending_count().await.unwrap(), 0);
    assert_eq!(publisher.metrics().written.get(), 3);
    assert_eq!(publisher.metrics().dropped.get(), 0);
    assert!(publisher.health().connected);
}

#[tokio::test]
async fn xadd_trims_the_stream_to_about_maxlen() {
    let url = redis_url();
    let key = unique_key("maxlen");
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 10,
        },
        1000,
    );
    for i in 0..500 {
        publisher.publish(event(&format!("r{i}")));
    }
    wait_until("500 events written", || {
        publisher.metrics().written.get() == 500
    })
    .await;
    let len = xlen(&url, &key).await;
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default), so the length is approximate.
    assert!((10..=200).contains(&len), "XLEN {len}");

    let untrimmed = unique_key("maxlen-zero");
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: untrimmed.clone(),
            max_len: 0,
        },
        1000,
    );
    for i in 0..300 {
        publisher.publish(event(&format!("r{i}")));
    }
    publisher.shutdown(WAIT).await;
    assert_eq!(xlen(&url, &untrimmed).await, 300);
}

#[tokio::test]
async fn consumers_of_one_group_share_the_entries() {
    let url = redis_url();
    let key = unique_key("share");
    let mut first = consumer(&url, &key, "c1", Duration::from_secs(30));
    let mut second = consumer(&url, &key, "c2", Duration::from_secs(30));
    first.ensure_group().await.unwrap();
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        100,
    );
    for i in 0..10 {
        publisher.publish(event(&format!("a{i}")));
    }
    publisher.shutdown(WAIT).await;
    // The first consumer reads at most 4, the second takes the rest.
    let mut limited = StreamConsumer::new(
        connection(&url),
        ConsumerSettings {
            read_count: 4,
            ..first.settings().clone()
        },
    );
    let taken_by_first = limited.next_batch().await.unwrap();
    assert_eq!(taken_by_first.len(), 4);
    let taken_by_second = read_entries(&mut second, 6).await;
    let mut all = request_ids(&taken_by_first);
    let second_ids = request_ids(&taken_by_second);
    assert!(all.is_disjoint(&second_ids));
    all.extend(second_ids);
    assert_eq!(all.len(), 10);
    // Nothing new is left for a third consumer.
    let mut third = consumer(&url, &key, "c3", Duration::from_secs(30));
    assert!(third.next_batch().await.unwrap().is_empty());
}

#[tokio::test]
async fn pending_entries_are_redelivered_to_the_same_name_and_reclaimed_by_others_after_idle() {
    let url = redis_url();
    let key = unique_key("reclaim");
    let mut dead = consumer(&url, &key, "dead", Duration::from_secs(30));
    dead.ensure_group().await.unwrap();
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        100,
    );
    for i in 0..5 {
        publisher.publish(event(&format!("p{i}")));
    }
    publisher.shutdown(WAIT).await;
    let unacked = read_entries(&mut dead, 5).await;
    drop(dead);

    // A restart under the same name drains its own pending list first.
    let mut restarted = consumer(&url, &key, "dead", Duration::from_secs(30));
    let again = restarted.next_batch().await.unwrap();
    assert_eq!(request_ids(&again), request_ids(&unacked));
    assert!(
        again
            .iter()
            .all(|entry| entry.delivery == Delivery::Redelivered)
    );
    drop(restarted);

    // Another consumer takes them over once they are idle long enough.
    let mut survivor = consumer(&url, &key, "survivor", Duration::from_millis(300));
    let claimed = read_entries(&mut survivor, 5).await;
    assert_eq!(request_ids(&claimed), request_ids(&unacked));
    assert!(
        claimed
            .iter()
            .all(|entry| entry.delivery == Delivery::Redelivered)
    );
    let ids: Vec<String> = claimed.iter().map(|entry| entry.id.clone()).collect();
    survivor.ack(&ids).await.unwrap();
    assert_eq!(survivor.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn malformed_entries_are_returned_as_such_and_can_be_acked() {
    let url = redis_url();
    let key = unique_key("malformed");
    let mut consumer = consumer(&url, &key, "c1", Duration::from_secs(30));
    consumer.ensure_group().await.unwrap();
    let mut conn = connection(&url);
    for (field, value) in [
        ("data", "not json"),
        ("other", "x"),
        ("data", r#"{"RequestID":"ok"}"#),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let entries = read_entries(&mut consumer, 3).await;
    assert!(matches!(
        entries[0].payload,
        Err(MalformedEntry::InvalidJson(_))
    ));
    assert_eq!(entries[1].payload, Err(MalformedEntry::MissingData));
    assert_eq!(entries[2].payload.as_ref().unwrap().request_id, "ok");
    let ids: Vec<String> = entries.iter().map(|entry| entry.id.clone()).collect();
    consumer.ack(&ids).await.unwrap();
    assert_eq!(consumer.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn in_memory_bus_fans_out_and_counts_lagging_subscribers() {
    let publisher = EventPublisher::in_memory(2);
    let mut fast = publisher.subscribe().unwrap();
    let mut slow = publisher.subscribe().unwrap();
    publisher.publish(event("m1"));
    assert_eq!(fast.recv().await.unwrap().request_id, "m1");
    publisher.publish(event("m2"));
    publisher.publish(event("m3"));
    // `slow` has 3 unread events in a ring of 2: the oldest is lost and counted.
    assert_eq!(slow.recv().await.unwrap().request_id, "m2");
    assert_eq!(publisher.metrics().lagged.get(), 1);
    assert_eq!(publisher.metrics().published.get(), 3);
    assert!(publisher.health().connected);
}

#[tokio::test]
async fn an_in_memory_bus_has_an_audience_only_while_someone_subscribes() {
    let publisher = EventPublisher::in_memory(2);
    assert!(!publisher.has_audience());
    let subscription = publisher.subscribe().unwrap();
    assert!(publisher.has_audience());
    drop(subscription);
    assert!(!publisher.has_audience());
}

#[tokio::test]
async fn publisher_buffers_while_redis_is_down_and_delivers_after_it_returns() {
    let port = PrivateRedis::free_port().unwrap();
    let mut redis = PrivateRedis::start(port).await.unwrap();
    let url = redis.url();
    let key = unique_key("outage");
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        5,
    );
    publisher.publish(event("before"));
    wait_until("first event written", || {
        publisher.metrics().written.get() == 1
    })
    .await;

    redis.kill();
    publisher.publish(event("probe"));
    wait_until("bus degraded", || !publisher.health().connected).await;
    // The writer holds "probe" in its retry loop; the queue holds 5 more; the rest is dropped.
    for i in 0..10 {
        publisher.publish(event(&format!("down{i}")));
    }
    assert_eq!(publisher.metrics().dropped.get(), 5);
    assert_eq!(publisher.health().queued, 5);
    assert_eq!(publisher.metrics().connected.get(), 0);

    let _restarted = PrivateRedis::start(port).await.unwrap();
    wait_until("buffered events written", || {
        publisher.metrics().written.get() == 7
    })
    .await;
    assert!(publisher.health().connected);
    assert_eq!(xlen(&url, &key).await, 6); // the restarted server is empty: "probe" + 5 buffered
    let mut consumer = consumer(&url, &key, "c1", Duration::from_secs(30));
    consumer.ensure_group().await.unwrap();
    let entries = read_entries(&mut consumer, 6).await;
    let ids = request_ids(&entries);
    assert!(ids.contains("probe"));
    assert!((0..5).all(|i| ids.contains(&format!("down{i}"))));
}

#[tokio::test]
async fn shutdown_flushes_the_queue_within_its_bound_and_refuses_later_events() {
    let url = redis_url();
    let key = unique_key("flush");
    let publisher = EventPublisher::redis_streams(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        1000,
    );
    for i in 0..200 {
        publisher.publish(event(&format!("f{i}")));
    }
    publisher.shutdown(WAIT).await;
    assert_eq!(xlen(&url, &key).await, 200);
    publisher.publish(event("late"));
    assert_eq!(publisher.metrics().dropped.get(), 1);

    // Against an unreachable Redis the bound wins and the queued events are counted as dropped.
    let port = PrivateRedis::free_port().unwrap();
    let unreachable = format!("redis://127.0.0.1:{port}/");
    let stuck = EventPublisher::redis_streams(
        connection(&unreachable),
        StreamTarget {
            stream_key: key,
            max_len: 0,
        },
        10,
    );
    for i in 0..3 {
        stuck.publish(event(&format!("s{i}")));
    }
    let started = std::time::Instant::now();
    stuck.shutdown(Duration::from_millis(500)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stuck.metrics().written.get(), 0);
}

#[tokio::test]
async fn from_settings_builds_the_configured_bus() {
    let url = redis_url();
    let key = unique_key("settings");
    let vars = std::collections::HashMap::from([
        (llm_proxy_env::REDIS_URL, url.clone()),
        (llm_proxy_env::REDIS_STREAM_KEY, key.clone()),
        (llm_proxy_env::OBSERVABILITY_BUFFER_SIZE, "7".to_string()),
    ]);
    let lookup = |name: &str| vars.get(name).cloned();
    let redis = RedisSettings::from_lookup(&lookup).unwrap();
    let stream = llm_proxy_events::StreamSettings::from_lookup(&lookup).unwrap();

    let in_memory =
        EventPublisher::from_settings(llm_proxy_events::EventBusKind::InMemory, &redis, &stream)
            .unwrap();
    assert!(in_memory.subscribe().is_some());

    let publisher = EventPublisher::from_settings(
        llm_proxy_events::EventBusKind::RedisStreams,
        &redis,
        &stream,
    )
    .unwrap();
    assert!(publisher.subscribe().is_none());
    publisher.publish(event("x"));
    publisher.shutdown(WAIT).await;
    assert_eq!(xlen(&url, &key).await, 1);
    assert_eq!(
        publisher.health().kind,
        llm_proxy_events::EventBusKind::RedisStreams
    );
}

/// The request ids in the stream, in stream order (XRANGE, read without a consumer group).
async fn stream_request_ids(url: &str, key: &str) -> Vec<String> {
    let mut conn = connection(url);
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let event: InstrumentationEvent = serde_json::from_str(&fields[1]).unwrap();
            event.request_id
        })
        .collect()
}

fn spool_settings(test: &str) -> SpoolSettings {
    let dir = std::env::temp_dir().join(unique_key(test));
    SpoolSettings {
        path: dir.join("event-spool.jsonl"),
        max_bytes: 256 << 20,
    }
}

/// The indices of `ids` (`e{i}`) at their first occurrence.
fn first_occurrences(ids: &[String]) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .map(|id| id.trim_start_matches('e').parse::<usize>().unwrap())
        .filter(|i| seen.insert(*i))
        .collect()
}

#[tokio::test]
async fn a_redis_outage_under_steady_load_loses_no_event_and_keeps_publish_order() {
    const EVENTS: usize = 3000;
    const KILL_AT: usize = 500;
    const RESTART_AT: usize = 2500;
    let mut redis = PrivateRedis::start_on_free_port().await.unwrap();
    let url = redis.url();
    let key = unique_key("spool-outage");
    let spool = spool_settings("spool-outage");
    let publisher = EventPublisher::redis_streams_spooled(
        connection(&url),
        StreamTarget {
            stream_key: key.clone(),
            max_len: 0,
        },
        100, // far below what the outage brings: the spool, not the queue, holds the events
        &spool,
    )
    .unwrap();
    // One event per millisecond (1,000/s), Redis down for about 2 s of it.
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    let mut degraded = false;
    for i in 0..EVENTS {
        ticks.tick().await;
        if i == KILL_AT {
            redis.kill();
        }
        if i == RESTART_AT {
            redis.restart().await.unwrap();
        }
        if (KILL_AT..RESTART_AT).contains(&i) && !publisher.health().connected {
            degraded = true;
        }
        publisher.publish(event(&format!("e{i}")));
    }
    assert!(degraded, "the bus reports degraded while spooling");
    let last = format!("e{}", EVENTS - 1);
    tokio::time::timeout(WAIT, async {
        while !(publisher.health().connected
            && stream_request_ids(&url, &key).await.last() == Some(&last))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the spool is replayed and the stream catches up");
    assert_eq!(publisher.metrics().dropped.get(), 0);
    // The restarted server starts empty (no persistence): what was written before the kill is
    // gone with it. Everything from the kill on (give or take the batch in flight) must be there,
    // each event at least once, first occurrences in publish order.
    let order = first_occurrences(&stream_request_ids(&url, &key).await);
    let start = order[0];
    assert!(
        start <= KILL_AT,
        "events from {start} on arrived, the kill was at {KILL_AT}"
    );
    assert_eq!(order, (start..EVENTS).collect::<Vec<_>>());
    assert_eq!(
        std::fs::metadata(&spool.path).unwrap().len(),
        0,
        "replayed spool truncated"
    );
}

#[tokio::test]
async fn a_spool_left_by_a_stopped_publisher_is_replayed_by_the_next_one() {
    let mut redis = PrivateRedis::start_on_free_port().await.unwrap();
    let url = redis.url();
    let key = unique_key("spool-restart");
    let spool = spool_settings("spool-restart");
    let target = StreamTarget {
        stream_key: key.clone(),
        max_len: 0,
    };
    redis.kill();
    let first =
        EventPublisher::redis_streams_spooled(connection(&url), target.clone(), 100, &spool)
            .unwrap();
    for i in 0..50 {
        first.publish(event(&format!("e{i}")));
    }
    wait_until("first publisher degraded", || !first.health().connected).await;
    first.shutdown(Duration::from_millis(500)).await;
    assert_eq!(first.metrics().dropped.get(), 0);
    assert!(
        std::fs::metadata(&spool.path).unwrap().len() > 0,
        "events left in the spool"
    );

    redis.restart().await.unwrap();
    let second =
        EventPublisher::redis_streams_spooled(connection(&url), target, 10, &spool).unwrap();
    second.publish(event("e50"));
    tokio::time::timeout(WAIT, async {
        while stream_request_ids(&url, &key)
            .await
            .last()
            .map(String::as_str)
            != Some("e50")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the left spool and the new event are written");
    let order = first_occurrences(&stream_request_ids(&url, &key).await);
    assert_eq!(
        order,
        (0..=50).collect::<Vec<_>>(),
        "spooled events first, in order"
    );
}
