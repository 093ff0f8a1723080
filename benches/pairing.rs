//! Chat-roulette micro-benchmarks: `chat::Pairing` with an Outbox that
//! drops everything, so only the pairing logic (and client JSON parsing) is
//! timed. `cargo bench --bench pairing`; see benches/README.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chat::chat::matchmaker::Matchmaker;
use chat::chat::{ChatConfig, ClientId, Outbox, Pairing, ServerMsg};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use std::sync::{Arc, Mutex};

/// Drops every message (black-boxed so building it is not optimised away).
struct NoOutbox;

impl Outbox for NoOutbox {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        black_box((to, msg));
    }
}

/// Serialises every message into one reused buffer, as the server does
/// into a connection's output buffer (minus the frame header).
struct JsonOutbox(Vec<u8>);

impl Outbox for JsonOutbox {
    fn send(&mut self, to: ClientId, msg: &ServerMsg<'_>) {
        self.0.clear();
        chat::chat::write_json(&mut self.0, msg);
        black_box((to, &self.0));
    }
}

/// High enough that the rate limiter never drops a benchmark message
/// (time also advances 1 ms per message where it matters).
fn config() -> ChatConfig {
    ChatConfig {
        rate_per_sec: 1_000_000,
        ..Default::default()
    }
}

const HELLO: &[u8] = br#"{"type":"message","text":"hello"}"#;
const NEXT: &[u8] = br#"{"type":"next"}"#;

/// Clients per timed batch in the `iter_custom` benches: the timed part
/// does `BATCH` operations, then the state is put back untimed.
const BATCH: u64 = 1000;

/// `count` clients with ids `first..first + count`, each waiting with its
/// own interest `t<id>` (so none pairs with another, and none takes
/// anyone: the interest wait of 5 s never ends at `now_ms` 0).
fn queue_tagged(p: &mut Pairing, first: usize, count: usize, out: &mut dyn Outbox) {
    for id in first..first + count {
        let query = format!("interests=t{id}");
        p.on_connect(id, Some(&query), 0, out);
    }
}

fn connect_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("pairing");
    // Two clients connect and are paired (the second finds the first);
    // both disconnect untimed after each batch.
    group.throughput(Throughput::Elements(2));
    // The same through the matchmaker shared by `--threads N` (behind its
    // Mutex, uncontended): the lock's price per join.
    for shared in [false, true] {
        let name = if shared {
            "connect_pair_2_clients_shared_matchmaker"
        } else {
            "connect_pair_2_clients"
        };
        group.bench_function(name, |b| {
            let mut p = if shared {
                let m = Matchmaker::new(config().interest_wait_ms, 0);
                Pairing::shared(config(), Arc::new(Mutex::new(m)), 0, 1)
            } else {
                Pairing::new(config())
            };
            let mut out = NoOutbox;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH) as usize;
                    let start = Instant::now();
                    for i in 0..n {
                        p.on_connect(2 * i, None, 0, &mut out);
                        p.on_connect(2 * i + 1, None, 0, &mut out);
                    }
                    total += start.elapsed();
                    for id in 0..2 * n {
                        p.on_disconnect(id, 0, &mut out);
                    }
                    left -= n as u64;
                }
                assert_eq!(p.counts().online, 0);
                total
            });
        });
    }

    // One `message` from a paired client, relayed to its partner.
    group.throughput(Throughput::Elements(1));
    for (name, json) in [
        ("relay_message_no_outbox", false),
        ("relay_message_json", true),
    ] {
        group.bench_function(name, |b| {
            let mut p = Pairing::new(config());
            let mut out: Box<dyn Outbox> = if json {
                Box::new(JsonOutbox(Vec::with_capacity(256)))
            } else {
                Box::new(NoOutbox)
            };
            p.on_connect(0, None, 0, out.as_mut());
            p.on_connect(1, None, 0, out.as_mut());
            assert_eq!(p.counts().chatting, 2);
            let mut now = 0u64;
            let mut from = 0;
            b.iter(|| {
                now += 1;
                from ^= 1;
                p.on_text(from, black_box(HELLO), now, out.as_mut())
                    .expect("not rate limited")
            });
            assert_eq!(p.metrics().errors_total(), 0, "rate limiter dropped");
        });
    }

    // `next` from a paired client (its partner is told `left`, it is
    // queued), then `next` from the partner (queued, paired with the
    // first again): two `next`s per cycle.
    group.throughput(Throughput::Elements(2));
    group.bench_function("next_leave_requeue_x2", |b| {
        let mut p = Pairing::new(config());
        let mut out = NoOutbox;
        p.on_connect(0, None, 0, &mut out);
        p.on_connect(1, None, 0, &mut out);
        let pairs_before = p.metrics().pairs;
        let mut now = 0u64;
        let mut iters = 0u64;
        b.iter(|| {
            now += 1;
            p.on_text(0, black_box(NEXT), now, &mut out).expect("ok");
            p.on_text(1, black_box(NEXT), now, &mut out).expect("ok");
            iters += 1;
        });
        assert_eq!(
            p.metrics().pairs - pairs_before,
            iters,
            "every cycle re-pairs"
        );
        assert_eq!(p.metrics().errors_total(), 0);
    });
    group.finish();
}

fn queued(c: &mut Criterion) {
    // A client without interests connects and disconnects while N clients
    // wait for their own interests: nobody fits, so it is queued and
    // removed again. The cost should not grow with N.
    let mut group = c.benchmark_group("connect_disconnect_with_queued");
    group.throughput(Throughput::Elements(1));
    for n in [0usize, 10_000, 100_000] {
        let mut p = Pairing::new(config());
        let mut out = NoOutbox;
        queue_tagged(&mut p, 0, n, &mut out);
        assert_eq!(p.counts().waiting, n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                p.on_connect(n, None, 0, &mut out);
                p.on_disconnect(n, 0, &mut out);
            });
            assert_eq!(p.counts().waiting, n);
        });
    }
    group.finish();
}

fn interests(c: &mut Criterion) {
    // 1,000 or 10,000 clients wait, each for its own tags, 10 tags each
    // (10,000 or 100,000 tags indexed). A newcomer with 10 tags, one of
    // which is a waiting client's, connects and is paired with it. The
    // newcomers' nine other tags are the same for all ("nobody0".."8"), so
    // they are added to and removed from the tag index on every connect.
    // Untimed after each batch:
    // the newcomers leave and their partners go back to waiting. Partners
    // are taken longest-waiting first, so the state after every batch is
    // the state before it (the interest-wait deadline queue included).
    let mut group = c.benchmark_group("interests_connect_match_1_of_10_tags");
    group.throughput(Throughput::Elements(1));
    for waiting in [1_000usize, 10_000] {
        interests_case(&mut group, waiting);
    }
    group.finish();
}

fn interests_case(group: &mut BenchmarkGroup<'_, WallTime>, waiting: usize) {
    group.bench_function(BenchmarkId::new("waiting", waiting), |b| {
        let mut p = Pairing::new(config());
        let mut out = NoOutbox;
        for id in 0..waiting {
            let tags: Vec<String> = (0..10).map(|k| format!("w{id}x{k}")).collect();
            let query = format!("interests={}", tags.join(","));
            p.on_connect(id, Some(&query), 0, &mut out);
        }
        assert_eq!(p.counts().waiting, waiting);
        // Newcomer queries, prepared outside the timed part: nine tags
        // nobody has and the fifth tag of waiting client `target`.
        let queries: Vec<String> = (0..waiting)
            .map(|target| {
                let mut tags: Vec<String> = (0..9).map(|k| format!("nobody{k}")).collect();
                tags.push(format!("w{target}x4"));
                format!("interests={}", tags.join(","))
            })
            .collect();
        let pairs_before = p.metrics().pairs;
        let mut total_iters = 0u64;
        let mut now = 0u64;
        let mut next_target = 0usize;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH) as usize;
                let targets = (next_target..next_target + n).map(|t| t % waiting);
                let start = Instant::now();
                for (i, target) in targets.clone().enumerate() {
                    p.on_connect(
                        waiting + i,
                        queries.get(target).map(String::as_str),
                        0,
                        &mut out,
                    );
                }
                total += start.elapsed();
                for (i, target) in targets.enumerate() {
                    p.on_disconnect(waiting + i, 0, &mut out);
                    now += 1;
                    p.on_text(target, NEXT, now, &mut out).expect("ok");
                }
                next_target = (next_target + n) % waiting;
                left -= n as u64;
            }
            total_iters += iters;
            total
        });
        assert_eq!(p.counts().waiting, waiting);
        assert_eq!(p.metrics().pairs - pairs_before, total_iters);
        assert_eq!(p.metrics().errors_total(), 0);
    });
}

criterion_group!(benches, connect_pair, queued, interests);
criterion_main!(benches);
