//! Renders `docs/benchmarks.md` from a results file: machine facts, what each number means, the
//! tables, and the targets of issue #6 with met/missed. Never edited by hand.

use std::fmt::Write;

use crate::results::{BenchResults, CacheHitScenario, MachineFacts, NotMeasured, StreamScenario};

/// One target of issue #6 and whether the run met it (`None`: not measured).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutcome {
    pub target: &'static str,
    pub measured: String,
    pub met: Option<bool>,
}

/// Added p99 at c=1 must be below this.
pub const ADDED_P99_LIMIT_US: f64 = 500.0;
/// ... and within this factor of the pass-through's added p99.
pub const OVERHEAD_RATIO_LIMIT: f64 = 2.0;
/// Throughput at c=64 as a share of the pass-through's.
pub const THROUGHPUT_RATIO_MIN: f64 = 0.70;
pub const THROUGHPUT_CONCURRENCY: usize = 64;
pub const TTFT_ADDED_P99_LIMIT_US: f64 = 1_000.0;
pub const IDLE_RSS_LIMIT_KIB: u64 = 30 * 1024;
pub const LOAD_RSS_LIMIT_KIB: u64 = 100 * 1024;

/// The targets of the issue, evaluated against `results`.
pub fn evaluate_targets(results: &BenchResults) -> Vec<TargetOutcome> {
    let latency = &results.latency;
    let added_p99 = latency.proxy_added_p99.median_us;
    let mut outcomes = vec![
        TargetOutcome {
            target: "added p99 at c=1 < 0.5 ms",
            measured: format!("{added_p99:.0} µs"),
            met: Some(added_p99 < ADDED_P99_LIMIT_US),
        },
        TargetOutcome {
            target: "added p99 at c=1 within 2× of the pass-through's",
            measured: format_ratio(latency.overhead_ratio_p99),
            met: latency
                .overhead_ratio_p99
                .map(|ratio| ratio <= OVERHEAD_RATIO_LIMIT),
        },
    ];
    let throughput = results
        .throughput
        .iter()
        .find(|point| point.concurrency == THROUGHPUT_CONCURRENCY);
    outcomes.push(TargetOutcome {
        target: "throughput at c=64 >= 70% of the pass-through's",
        measured: throughput
            .map(|point| format_ratio(point.ratio_to_bare))
            .unwrap_or_else(|| "not measured".to_owned()),
        met: throughput
            .and_then(|point| point.ratio_to_bare)
            .map(|ratio| ratio >= THROUGHPUT_RATIO_MIN),
    });
    outcomes.push(match &results.stream {
        // The proxy's p99 below the direct run's means the run's noise exceeds what it measures.
        Some(stream) if stream.proxy_ttft_added_p99_us < 0.0 => TargetOutcome {
            target: "stream TTFT added p99 < 1 ms",
            measured: format!(
                "{:.0} µs (negative: below the rig's noise, inconclusive)",
                stream.proxy_ttft_added_p99_us
            ),
            met: None,
        },
        Some(stream) => TargetOutcome {
            target: "stream TTFT added p99 < 1 ms",
            measured: format!("{:.0} µs", stream.proxy_ttft_added_p99_us),
            met: Some(stream.proxy_ttft_added_p99_us < TTFT_ADDED_P99_LIMIT_US),
        },
        None => not_measured("stream TTFT added p99 < 1 ms"),
    });
    match &results.memory {
        Some(memory) => {
            outcomes.push(TargetOutcome {
                target: "RSS idle < 30 MiB",
                measured: format_mib(memory.idle_kib),
                met: Some(memory.idle_kib < IDLE_RSS_LIMIT_KIB),
            });
            outcomes.push(TargetOutcome {
                target: "RSS at c=256 < 100 MiB",
                measured: format_mib(memory.load_peak_kib),
                met: Some(memory.load_peak_kib < LOAD_RSS_LIMIT_KIB),
            });
        }
        None => {
            outcomes.push(not_measured("RSS idle < 30 MiB"));
            outcomes.push(not_measured("RSS at c=256 < 100 MiB"));
        }
    }
    outcomes.push(cache_hit_outcome(
        "cache hit (in-memory) p99 < direct upstream p99",
        results.cache_hit.as_ref(),
        || "not measured".to_owned(),
    ));
    outcomes.push(cache_hit_outcome(
        "cache hit (Redis) p99 < direct upstream p99",
        results.redis.as_ref().map(|redis| &redis.cache_hit),
        || redis_not_measured(&results.not_measured),
    ));
    outcomes
}

/// A cache hit is faster than a direct upstream call when its p99 is below the delayed mock's
/// (a miss during the run makes it missed: the hit path did not hold).
fn cache_hit_outcome(
    target: &'static str,
    scenario: Option<&CacheHitScenario>,
    absent: impl FnOnce() -> String,
) -> TargetOutcome {
    match scenario {
        Some(cache) => TargetOutcome {
            target,
            measured: format!(
                "{:.0} µs vs {:.0} µs (mock delay {} ms); {} misses/errors",
                cache.hit.p99_us,
                cache.direct_delayed.p99_us,
                cache.upstream_delay_ms,
                cache.hit_errors
            ),
            met: Some(cache.hit_errors == 0 && cache.hit.p99_us < cache.direct_delayed.p99_us),
        },
        None => TargetOutcome {
            target,
            measured: absent(),
            met: None,
        },
    }
}

/// Why the Redis configuration has no numbers, as the report prints it.
fn redis_not_measured(not_measured: &[NotMeasured]) -> String {
    let reason = not_measured
        .iter()
        .find(|item| item.scenario == crate::runner::REDIS_SCENARIO)
        .map_or("no Redis", |item| item.reason.as_str());
    format!("not measured: {reason}")
}

fn not_measured(target: &'static str) -> TargetOutcome {
    TargetOutcome {
        target,
        measured: "not measured".to_owned(),
        met: None,
    }
}

fn format_ratio(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |ratio| format!("{ratio:.2}"))
}

fn format_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured / inconclusive",
    }
}

/// The Markdown report. `Write` into a `String` cannot fail, so its results are ignored.
/// The `## Machine` heading and the rows every benchmark page shares (CPUs, model, kernel, commit,
/// build profile under `profile_label`, load average); the caller adds its own rows.
pub fn write_machine_facts(out: &mut String, machine: &MachineFacts, profile_label: &str) {
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "| fact | value |\n|---|---|");
    let _ = writeln!(out, "| CPUs (nproc) | {} |", machine.nproc);
    let _ = writeln!(out, "| CPU model | {} |", machine.cpu_model);
    let _ = writeln!(out, "| kernel | {} |", machine.kernel);
    let _ = writeln!(out, "| commit | `{}` |", machine.commit);
    let _ = writeln!(out, "| {profile_label} | {} |", machine.profile);
    let _ = writeln!(
        out,
        "| load average (1 min) start / end | {:.2} / {:.2} |",
        machine.load_average_start, machine.load_average_end
    );
}

pub fn markdown(results: &BenchResults) -> String {
    let mut out = String::new();
    let machine = &results.machine;
    let settings = &results.settings;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by `bench report bench/results/latest.json` from the committed results of `make bench`; \
         do not edit by hand. Method: anchors-gateway §2.3/§2.4 (added latency by subtraction from a \
         direct run, interleaved rounds, median of per-round differences).\n"
    );
    write_machine_facts(&mut out, machine, "profile");
    let _ = writeln!(
        out,
        "| pinning | {} |",
        if machine.pinned {
            "taskset: proxy and pass-through on core 1 (TOKIO_WORKER_THREADS=1), mock and driver on core 0"
        } else {
            "none (taskset unavailable or fewer than 2 CPUs)"
        }
    );
    let _ = writeln!(
        out,
        "| mode | {} |",
        if machine.quick {
            "BENCH_QUICK=1 smoke run"
        } else {
            "full"
        }
    );
    let _ = writeln!(out, "| started | {} |\n", machine.started_at);
    if machine.load_average_start.max(machine.load_average_end) > 1.0 {
        let _ = writeln!(
            out,
            "**Noisy run:** the load average shows other processes competing for the cores, so tails \
             (p99, max) include their preemption of the pinned processes; compare medians and ratios, and \
             re-run on an idle machine before drawing conclusions from a p99.\n"
        );
    }

    let _ = writeln!(out, "## Targets (issue #6)\n");
    let _ = writeln!(out, "| target | measured | verdict |\n|---|---|---|");
    for outcome in evaluate_targets(results) {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            outcome.target,
            outcome.measured,
            verdict(outcome.met)
        );
    }

    let _ = writeln!(out, "\n## What is measured\n");
    let _ = writeln!(
        out,
        "Three targets behind the same mock upstream (`bench-mock`: instant 1.4 KB completion with `usage`, \
         or SSE): **direct** (driver → mock), **pass-through** (`bare-proxy`: one pooled hyper client, no logic, \
         the proxy's runtime and allocator (mimalloc); the physical limit) and **proxy** (`llm-proxy` in its default configuration: SQLite in a temporary \
         directory, in-memory event bus, a token with a large `max_requests` created through `/manage`; a token with a quota is admitted from \
         quota reservations: one atomic SQLite write per chunk of up to 1,024 requests). \
         *Added* latency is target − direct; the *overhead ratio* is proxy added / pass-through added.\n"
    );

    let _ = writeln!(
        out,
        "Reproduce with `make bench` (`BENCH_QUICK=1` for a one-minute smoke run), which writes \
         `bench/results/latest.json` and regenerates this page. Absolute numbers depend on the machine and \
         on its load (see the load average above); the ratios are what compares across machines. The \
         deterministic regression check is `make bench-gate` (callgrind instructions per request against \
         `bench/baseline.json`, with the pass-through's count as the reference: the proxy's own work \
         is its count minus the pass-through's).\n"
    );

    let latency = &results.latency;
    let _ = writeln!(
        out,
        "## Latency at c=1 (closed loop, {} interleaved rounds × {} requests, {} warm-ups)\n",
        settings.rounds, settings.requests_per_round, settings.warmup_requests
    );
    let _ = writeln!(
        out,
        "| target | p50 | p99 | added p50 (IQR) | added p99 (IQR) |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| direct | {:.0} µs | {:.0} µs | – | – |",
        latency.direct.p50_us, latency.direct.p99_us
    );
    let _ = writeln!(
        out,
        "| pass-through | {:.0} µs | {:.0} µs | {} | {} |",
        latency.bare.p50_us,
        latency.bare.p99_us,
        format_added(&latency.bare_added_p50),
        format_added(&latency.bare_added_p99)
    );
    let _ = writeln!(
        out,
        "| proxy | {:.0} µs | {:.0} µs | {} | {} |",
        latency.proxy.p50_us,
        latency.proxy.p99_us,
        format_added(&latency.proxy_added_p50),
        format_added(&latency.proxy_added_p99)
    );
    let _ = writeln!(
        out,
        "\nOverhead ratio p50 {} / p99 {}; proxy errors: {}.\n",
        format_ratio(latency.overhead_ratio_p50),
        format_ratio(latency.overhead_ratio_p99),
        latency.proxy_errors
    );

    let _ = writeln!(
        out,
        "## Throughput (closed loop, {:.0} s per target and concurrency in {} interleaved rounds, \
         instant mock; proxy / pass-through is the median of the rounds' ratios)\n",
        settings.throughput_seconds,
        crate::runner::THROUGHPUT_ROUNDS
    );
    let _ = writeln!(
        out,
        "| concurrency | direct RPS | pass-through RPS | proxy RPS | proxy / pass-through | proxy p99 | proxy non-2xx / errors |\n|---|---|---|---|---|---|---|"
    );
    for point in &results.throughput {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.0} µs | {} / {} |",
            point.concurrency,
            point.direct.rps,
            point.bare.rps,
            point.proxy.rps,
            format_ratio(point.ratio_to_bare),
            point.proxy.latency.p99_us,
            point.proxy.unexpected_status,
            point.proxy.transport_errors
        );
    }

    let _ = writeln!(out, "\n## Streaming\n");
    match &results.stream {
        Some(stream) => {
            let _ = writeln!(
                out,
                "{} content chunks every {} ms, {} concurrent streams, {} interleaved rounds of \
                 {} streams per target. TTFT = send to first body byte; gap = time between body \
                 frames.\n",
                settings.stream_chunks,
                settings.stream_interval_ms,
                settings.stream_concurrency,
                settings.stream_rounds,
                settings.streams_per_round
            );
            let _ = writeln!(
                out,
                "| target | TTFT p50 | TTFT p99 | gap p99 | gap max | errors |\n|---|---|---|---|---|---|"
            );
            for (name, summary) in [
                ("direct", &stream.direct),
                ("pass-through", &stream.bare),
                ("proxy", &stream.proxy),
            ] {
                let _ = writeln!(
                    out,
                    "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} |",
                    summary.first_byte.p50_us,
                    summary.first_byte.p99_us,
                    summary.frame_gaps.p99_us,
                    summary.frame_gaps.max_us,
                    summary.unexpected_status + summary.transport_errors
                );
            }
            let _ = writeln!(
                out,
                "\nTTFT added p99: proxy {:.0} µs, pass-through {:.0} µs.",
                stream.proxy_ttft_added_p99_us, stream.bare_ttft_added_p99_us
            );
            write_stream_waves(&mut out, stream);
        }
        None => {
            let _ = writeln!(out, "not measured");
        }
    }

    let _ = writeln!(out, "\n## Invalid-token rejection\n");
    match &results.rejection {
        Some(rejection) => {
            let _ = writeln!(
                out,
                "Well-formed but unknown token, closed loop at c={}: {:.0} rejections/s (401), {:.0} pass-through RPS \
                 at the same concurrency ({} of it); other statuses/errors: {} / {}.",
                rejection.concurrency,
                rejection.rejected.rps,
                rejection.bare_rps,
                format_ratio(rejection.ratio_to_bare),
                rejection.rejected.unexpected_status,
                rejection.rejected.transport_errors
            );
        }
        None => {
            let _ = writeln!(out, "not measured");
        }
    }

    let _ = writeln!(out, "\n## Memory (VmRSS of the proxy process)\n");
    match &results.memory {
        Some(memory) => {
            let _ = writeln!(
                out,
                "| idle (before the first request) | peak under load (c={}) | after load (+{:.0} s) |\n|---|---|---|",
                memory.load_concurrency, memory.settle_seconds
            );
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                format_mib(memory.idle_kib),
                format_mib(memory.load_peak_kib),
                format_mib(memory.after_kib)
            );
            let _ = writeln!(
                out,
                "\nDuring the load run: {:.0} RPS, {} non-2xx, {} transport errors (the default \
                 `MAX_CONCURRENT_REQUESTS` answers 503 beyond its limit).",
                memory.load.rps, memory.load.unexpected_status, memory.load.transport_errors
            );
        }
        None => {
            let _ = writeln!(out, "not measured");
        }
    }

    write_cache_hits(&mut out, results);
    write_redis(&mut out, results);

    if !results.not_measured.is_empty() {
        let _ = writeln!(out, "\n## Not measured\n");
        let _ = writeln!(out, "| scenario | why |\n|---|---|");
        for item in &results.not_measured {
            let _ = writeln!(out, "| {} | not measured: {} |", item.scenario, item.reason);
        }
    }
    out
}

fn write_cache_hits(out: &mut String, results: &BenchResults) {
    let _ = writeln!(out, "\n## Cache hits (c=1)\n");
    let Some(memory) = &results.cache_hit else {
        let _ = writeln!(out, "not measured");
        return;
    };
    let _ = writeln!(
        out,
        "The chat completion with the client's opt-in `Cache-Control: {}`, stored by one warming \
         request, then {} interleaved rounds × {} requests of: the instant mock (direct), a second \
         mock that waits {} ms before answering (a stand-in for a real upstream, which a hit never \
         reaches; real LLM APIs take far longer) and the proxy's hits. Every hit must carry \
         `X-PROXY-CACHE: hit`: a miss counts as an error. Added = hit − direct (instant mock).\n",
        crate::runner::CACHE_OPT_IN,
        results.settings.rounds,
        results.settings.requests_per_round,
        memory.upstream_delay_ms
    );
    let _ = writeln!(
        out,
        "| target | p50 | p99 | added p50 (IQR) | added p99 (IQR) | misses / errors |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| direct (instant mock) | {:.0} µs | {:.0} µs | – | – | – |",
        memory.direct.p50_us, memory.direct.p99_us
    );
    let _ = writeln!(
        out,
        "| direct (mock delay {} ms) | {:.0} µs | {:.0} µs | – | – | – |",
        memory.upstream_delay_ms, memory.direct_delayed.p50_us, memory.direct_delayed.p99_us
    );
    let redis = results.redis.as_ref().map(|redis| &redis.cache_hit);
    for cache in std::iter::once(memory).chain(redis) {
        let _ = writeln!(
            out,
            "| proxy cache hit ({}) | {:.0} µs | {:.0} µs | {} | {} | {} |",
            cache.backend,
            cache.hit.p50_us,
            cache.hit.p99_us,
            format_added(&cache.hit_added_p50),
            format_added(&cache.hit_added_p99),
            cache.hit_errors
        );
    }
    if redis.is_none() {
        let _ = writeln!(
            out,
            "| proxy cache hit (redis) | {} | | | | |",
            redis_not_measured(&results.not_measured)
        );
    }
}

fn write_redis(out: &mut String, results: &BenchResults) {
    let _ = writeln!(
        out,
        "\n## Redis configuration (Redis Streams bus, Redis cache, Redis rate limits)\n"
    );
    let Some(redis) = &results.redis else {
        let _ = writeln!(out, "{}", redis_not_measured(&results.not_measured));
        return;
    };
    let _ = writeln!(
        out,
        "A second `llm-proxy` with `LLM_PROXY_EVENT_BUS=redis-streams`, `HTTP_CACHE_BACKEND=redis` and \
         `DISTRIBUTED_RATE_LIMIT_ENABLED=true` (a default limit of 10⁹ requests per minute: every request \
         runs the Lua check, none is refused), Redis: {}; same mock, pass-through, rounds and durations \
         as above (its rounds interleave direct, pass-through and this proxy).\n",
        redis.server
    );
    let latency = &redis.latency;
    let _ = writeln!(
        out,
        "| measure | direct | pass-through | proxy with Redis | ratio |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| c=1 p50 / p99 | {:.0} / {:.0} µs | {:.0} / {:.0} µs | {:.0} / {:.0} µs | |",
        latency.direct.p50_us,
        latency.direct.p99_us,
        latency.bare.p50_us,
        latency.bare.p99_us,
        latency.proxy.p50_us,
        latency.proxy.p99_us
    );
    let _ = writeln!(
        out,
        "| c=1 added p50 (IQR) | – | {} | {} | overhead ratio {} |",
        format_added(&latency.bare_added_p50),
        format_added(&latency.proxy_added_p50),
        format_ratio(latency.overhead_ratio_p50)
    );
    let _ = writeln!(
        out,
        "| c=1 added p99 (IQR) | – | {} | {} | overhead ratio {} |",
        format_added(&latency.bare_added_p99),
        format_added(&latency.proxy_added_p99),
        format_ratio(latency.overhead_ratio_p99)
    );
    let point = &redis.throughput;
    let _ = writeln!(
        out,
        "| c={} RPS | {:.0} | {:.0} | {:.0} | proxy / pass-through {} |",
        point.concurrency,
        point.direct.rps,
        point.bare.rps,
        point.proxy.rps,
        format_ratio(point.ratio_to_bare)
    );
    let _ = writeln!(
        out,
        "\nProxy errors: {} at c=1, {} non-2xx / {} transport errors at c={}. Cache hits on Redis: see \
         \"Cache hits\" above.",
        latency.proxy_errors,
        point.proxy.unexpected_status,
        point.proxy.transport_errors,
        point.concurrency
    );
}

fn format_added(added: &crate::stats::Added) -> String {
    format!(
        "{:.0} µs ({:.0}–{:.0})",
        added.median_us, added.iqr_low_us, added.iqr_high_us
    )
}

/// TTFT by wave position: the first wave of each round starts after the target sat idle (other
/// targets were running), so it pays what went cold; later waves start right after a busy wave.
fn write_stream_waves(out: &mut String, stream: &StreamScenario) {
    if stream.first_wave.proxy.first_byte.count == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "\nTTFT by wave (the first wave of each round starts after the target sat idle while the \
         others ran; later waves start as the previous wave ends):\n\n\
         | target | first wave p50 | first wave p99 | later waves p50 | later waves p99 | samples (first / later) |\n\
         |---|---|---|---|---|---|"
    );
    for (name, first, later) in [
        (
            "direct",
            &stream.first_wave.direct,
            &stream.later_waves.direct,
        ),
        (
            "pass-through",
            &stream.first_wave.bare,
            &stream.later_waves.bare,
        ),
        ("proxy", &stream.first_wave.proxy, &stream.later_waves.proxy),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} / {} |",
            first.first_byte.p50_us,
            first.first_byte.p99_us,
            later.first_byte.p50_us,
            later.first_byte.p99_us,
            first.first_byte.count,
            later.first_byte.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::LoadSummary;
    use crate::results::*;
    use crate::stats::{Added, Percentiles};

    fn added(median_us: f64) -> Added {
        Added {
            median_us,
            iqr_low_us: median_us - 1.0,
            iqr_high_us: median_us + 1.0,
        }
    }

    fn summary(rps: f64) -> LoadSummary {
        LoadSummary {
            rps,
            ..LoadSummary::default()
        }
    }

    fn sample() -> BenchResults {
        BenchResults {
            machine: MachineFacts {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.1.0".into(),
                commit: "abc123".into(),
                profile: "release".into(),
                load_average_start: 0.5,
                load_average_end: 0.7,
                pinned: true,
                quick: false,
                started_at: "2026-11-27T00:00:00Z".into(),
            },
            settings: Settings {
                rounds: 7,
                requests_per_round: 2000,
                warmup_requests: 500,
                throughput_seconds: 10.0,
                stream_chunks: 64,
                stream_interval_ms: 20,
                stream_concurrency: 16,
                stream_rounds: 4,
                streams_per_round: 64,
                memory_load_concurrency: 256,
            },
            latency: LatencyScenario {
                direct: Percentiles::default(),
                bare: Percentiles::default(),
                proxy: Percentiles::default(),
                bare_added_p50: added(20.0),
                bare_added_p99: added(50.0),
                proxy_added_p50: added(60.0),
                proxy_added_p99: added(120.0),
                overhead_ratio_p99: Some(2.4),
                overhead_ratio_p50: Some(3.0),
                proxy_errors: 0,
            },
            throughput: vec![ThroughputPoint {
                concurrency: 64,
                direct: summary(30_000.0),
                bare: summary(10_000.0),
                proxy: summary(8_000.0),
                ratio_to_bare: Some(0.8),
            }],
            stream: None,
            rejection: None,
            memory: Some(MemoryScenario {
                idle_kib: 12 * 1024,
                load_peak_kib: 120 * 1024,
                after_kib: 20 * 1024,
                load_concurrency: 256,
                load: summary(9_000.0),
                settle_seconds: 5.0,
            }),
            cache_hit: Some(cache_hit("in-memory", 150.0, 0)),
            redis: None,
            not_measured: vec![
                NotMeasured {
                    scenario: "cache hit".into(),
                    reason: "no HTTP cache in the proxy yet".into(),
                },
                NotMeasured {
                    scenario: crate::runner::REDIS_SCENARIO.into(),
                    reason: "no Redis (BENCH_REDIS_URL is not set and no redis-server is on PATH)"
                        .into(),
                },
            ],
        }
    }

    fn percentiles(p50_us: f64, p99_us: f64) -> Percentiles {
        Percentiles {
            p50_us,
            p99_us,
            max_us: p99_us,
            count: 100,
        }
    }

    fn cache_hit(backend: &str, hit_p99_us: f64, hit_errors: u64) -> CacheHitScenario {
        CacheHitScenario {
            backend: backend.into(),
            upstream_delay_ms: 1,
            direct: percentiles(60.0, 90.0),
            direct_delayed: percentiles(1_080.0, 1_200.0),
            hit: percentiles(120.0, hit_p99_us),
            hit_added_p50: added(60.0),
            hit_added_p99: added(hit_p99_us - 90.0),
            hit_errors,
        }
    }

    fn redis_scenario() -> RedisScenario {
        let latency = sample().latency;
        RedisScenario {
            server: "private redis-server on 127.0.0.1:6390".into(),
            latency: LatencyScenario {
                overhead_ratio_p99: Some(3.5),
                ..latency
            },
            throughput: ThroughputPoint {
                concurrency: 64,
                direct: summary(30_000.0),
                bare: summary(10_000.0),
                proxy: summary(5_000.0),
                ratio_to_bare: Some(0.5),
            },
            cache_hit: cache_hit("redis", 1_500.0, 0),
        }
    }

    fn outcome<'a>(outcomes: &'a [TargetOutcome], prefix: &str) -> &'a TargetOutcome {
        outcomes
            .iter()
            .find(|outcome| outcome.target.starts_with(prefix))
            .unwrap()
    }

    #[test]
    fn targets_are_met_or_missed_by_their_thresholds() {
        let outcomes = evaluate_targets(&sample());
        assert_eq!(outcome(&outcomes, "added p99 at c=1 < 0.5").met, Some(true));
        assert_eq!(
            outcome(&outcomes, "added p99 at c=1 within").met,
            Some(false)
        );
        assert_eq!(outcome(&outcomes, "throughput").met, Some(true));
        assert_eq!(outcome(&outcomes, "stream").met, None);
        assert_eq!(outcome(&outcomes, "RSS idle").met, Some(true));
        assert_eq!(outcome(&outcomes, "RSS at c=256").met, Some(false));
    }

    #[test]
    fn a_negative_added_ttft_is_inconclusive_not_met() {
        let mut results = sample();
        let stream = |added: f64| StreamScenario {
            direct: summary(0.0),
            bare: summary(0.0),
            proxy: summary(0.0),
            first_wave: StreamWave::default(),
            later_waves: StreamWave::default(),
            proxy_ttft_added_p99_us: added,
            bare_ttft_added_p99_us: 0.0,
        };
        results.stream = Some(stream(-2_000.0));
        assert_eq!(outcome(&evaluate_targets(&results), "stream").met, None);
        results.stream = Some(stream(1_500.0));
        assert_eq!(
            outcome(&evaluate_targets(&results), "stream").met,
            Some(false)
        );
        results.stream = Some(stream(300.0));
        assert_eq!(
            outcome(&evaluate_targets(&results), "stream").met,
            Some(true)
        );
    }

    #[test]
    fn stream_ttft_is_shown_per_wave_when_the_waves_were_recorded() {
        let ttft = |p50_us: f64, p99_us: f64, count: u64| LoadSummary {
            first_byte: Percentiles {
                p50_us,
                p99_us,
                max_us: p99_us,
                count,
            },
            ..LoadSummary::default()
        };
        let mut results = sample();
        let mut stream = StreamScenario {
            direct: summary(0.0),
            bare: summary(0.0),
            proxy: summary(0.0),
            first_wave: StreamWave::default(),
            later_waves: StreamWave::default(),
            proxy_ttft_added_p99_us: 0.0,
            bare_ttft_added_p99_us: 0.0,
        };
        results.stream = Some(stream.clone());
        assert!(
            !markdown(&results).contains("TTFT by wave"),
            "results from before the split have no wave table"
        );
        stream.first_wave.proxy = ttft(3_000.0, 3_800.0, 64);
        stream.later_waves.proxy = ttft(1_300.0, 2_600.0, 192);
        results.stream = Some(stream);
        assert!(
            markdown(&results)
                .contains("| proxy | 3000 µs | 3800 µs | 1300 µs | 2600 µs | 64 / 192 |")
        );
    }

    #[test]
    fn a_missing_c64_point_is_not_measured_rather_than_missed() {
        let mut results = sample();
        results.throughput.clear();
        let outcomes = evaluate_targets(&results);
        assert_eq!(outcome(&outcomes, "throughput").met, None);
        assert_eq!(outcome(&outcomes, "throughput").measured, "not measured");
    }

    #[test]
    fn markdown_shows_facts_verdicts_and_not_measured_rows() {
        let doc = markdown(&sample());
        assert!(doc.contains("| CPU model | Test CPU |"), "{doc}");
        assert!(doc.contains("| load average (1 min) start / end | 0.50 / 0.70 |"));
        assert!(!doc.contains("Noisy run"));
        assert!(doc.contains("| added p99 at c=1 < 0.5 ms | 120 µs | met |"));
        assert!(doc.contains("| throughput at c=64 >= 70% of the pass-through's | 0.80 | met |"));
        assert!(doc.contains("| RSS at c=256 < 100 MiB | 120.0 MiB | **missed** |"));
        assert!(doc.contains("| cache hit | not measured: no HTTP cache in the proxy yet |"));
        assert!(doc.contains("| 64 | 30000 | 10000 | 8000 | 0.80 |"));
    }

    #[test]
    fn a_cache_hit_must_beat_the_delayed_upstream_and_never_miss() {
        let mut results = sample();
        let target = "cache hit (in-memory)";
        assert_eq!(outcome(&evaluate_targets(&results), target).met, Some(true));
        results.cache_hit = Some(cache_hit("in-memory", 1_300.0, 0));
        assert_eq!(
            outcome(&evaluate_targets(&results), target).met,
            Some(false)
        );
        results.cache_hit = Some(cache_hit("in-memory", 150.0, 2));
        let outcomes = evaluate_targets(&results);
        assert_eq!(outcome(&outcomes, target).met, Some(false));
        assert!(outcome(&outcomes, target).measured.contains("2 misses"));
        results.cache_hit = None;
        assert_eq!(outcome(&evaluate_targets(&results), target).met, None);
    }

    #[test]
    fn without_redis_the_report_says_so_in_every_redis_row() {
        let results = sample();
        let outcomes = evaluate_targets(&results);
        let redis = outcome(&outcomes, "cache hit (Redis)");
        assert_eq!(redis.met, None);
        assert!(
            redis.measured.starts_with("not measured: no Redis"),
            "{}",
            redis.measured
        );
        let doc = markdown(&results);
        assert!(doc.contains("## Redis configuration"), "{doc}");
        assert!(
            doc.contains("| proxy cache hit (redis) | not measured: no Redis"),
            "{doc}"
        );
        assert!(
            doc.contains("| proxy cache hit (in-memory) | 120 µs | 150 µs | 60 µs (59–61) |"),
            "{doc}"
        );
        assert!(
            doc.contains("| direct (mock delay 1 ms) | 1080 µs | 1200 µs |"),
            "{doc}"
        );
        let redis_section = doc.split("## Redis configuration").nth(1).unwrap();
        assert!(
            redis_section.contains("not measured: no Redis"),
            "{redis_section}"
        );
    }

    #[test]
    fn a_missing_redis_reason_defaults_to_no_redis() {
        let mut results = sample();
        results.not_measured.clear();
        assert_eq!(
            outcome(&evaluate_targets(&results), "cache hit (Redis)").measured,
            "not measured: no Redis"
        );
    }

    #[test]
    fn the_redis_configuration_shows_ratios_to_the_pass_through_and_its_hits() {
        let mut results = sample();
        results.redis = Some(redis_scenario());
        results.not_measured.truncate(1);
        let doc = markdown(&results);
        assert!(
            doc.contains("Redis: private redis-server on 127.0.0.1:6390"),
            "{doc}"
        );
        assert!(doc.contains("| c=1 added p99 (IQR) | – | 50 µs (49–51) | 120 µs (119–121) | overhead ratio 3.50 |"), "{doc}");
        assert!(
            doc.contains("| c=64 RPS | 30000 | 10000 | 5000 | proxy / pass-through 0.50 |"),
            "{doc}"
        );
        assert!(
            doc.contains("| proxy cache hit (redis) | 120 µs | 1500 µs |"),
            "{doc}"
        );
        assert!(!doc.contains("no Redis"), "{doc}");
        let outcomes = evaluate_targets(&results);
        assert_eq!(outcome(&outcomes, "cache hit (Redis)").met, Some(false));
    }

    #[test]
    fn results_without_the_cache_and_redis_fields_still_parse() {
        let mut json = serde_json::to_value(sample()).unwrap();
        let object = json.as_object_mut().unwrap();
        object.remove("cache_hit");
        object.remove("redis");
        let parsed: BenchResults = serde_json::from_value(json).unwrap();
        assert_eq!(parsed.cache_hit, None);
        assert_eq!(parsed.redis, None);
    }

    #[test]
    fn results_round_trip_through_json() {
        let mut results = sample();
        results.redis = Some(redis_scenario());
        let json = serde_json::to_string_pretty(&results).unwrap();
        let parsed: BenchResults = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, results);
        assert_eq!(markdown(&parsed), markdown(&results));
    }
}
