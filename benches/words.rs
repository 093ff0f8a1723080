//! The word list's cost per chat message (`--blocked-words`, issue 14):
//! `chat::safety::words::WordList::matches` with 1,000 entries, against
//! the obvious alternative in the same run (lower-case the message, then
//! `contains` for each entry, no word boundaries). `cargo bench --bench
//! words`; results in BENCHMARKS.md "Word list".

use std::hint::black_box;

use chat::safety::words::WordList;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// 1,000 distinct entries of 4 to 11 letters, a fixed function of the
/// index (a few two-word phrases among them).
fn entries() -> Vec<String> {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    (0..1000u32)
        .map(|i| {
            let mut x = i.wrapping_mul(2_654_435_761) ^ 0x9e37_79b9;
            let len = 4 + (i % 8) as usize;
            let mut w: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    letters[(x % 26) as usize] as char
                })
                .collect();
            w.push_str(&format!("{i}"));
            if i % 50 == 0 {
                w.push_str(" now");
            }
            w
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let words = entries();
    let list = WordList::new(&words.join("\n")).unwrap().unwrap();
    let lowered: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let messages = [
        ("short ascii, no match", "hey, how are you doing today? where are you from?".to_string()),
        (
            "400 B ascii, no match",
            "I have been thinking about learning to play the guitar for a while now, but I never seem to find the time. ".repeat(4),
        ),
        ("short ascii, a match at the end", format!("hello there, {}", words[999])),
        ("short non-ascii, no match", "Привет! Как дела? Откуда ты? 😀".to_string()),
    ];
    let mut group = c.benchmark_group("word list, 1000 entries");
    for (name, text) in &messages {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("aho-corasick, word boundaries", name),
            text,
            |b, t| b.iter(|| black_box(list.matches(black_box(t)))),
        );
        group.bench_with_input(
            BenchmarkId::new("lowercase + 1000 x contains", name),
            text,
            |b, t| {
                b.iter(|| {
                    let t = black_box(t).to_lowercase();
                    black_box(lowered.iter().any(|w| t.contains(w.as_str())))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
