//! Foundation figures, printed as one table:
//! cold start to ready, idle RSS, release binary size, and the per-turn overhead the daemon adds
//! around a zero-latency model (median and p99).
//!
//! Run with `cargo bench --bench foundation`. Start and memory are measured on the real binary
//! (`operator run` against a fresh state directory); the turn overhead in process, through the
//! router, store and turn loop, with a model that answers at once.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[path = "support/inproc.rs"]
mod inproc;

use std::time::{Duration, Instant};

use operator::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const STARTS: usize = 15;
const TURNS: usize = 3000;

fn main() {
    let binary = chat_daemon::binary(BIN);
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let (fresh, warm, rss) = start_and_memory();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (median, p99) = runtime.block_on(turn_overhead());
    let ping = runtime.block_on(store_round_trip());

    println!();
    println!("| figure                                   | value      |");
    println!("|------------------------------------------|------------|");
    println!(
        "| binary size ({:<26}) | {:>6.1} MiB |",
        if BIN.contains("/release/") {
            "release, stripped"
        } else {
            "debug build"
        },
        mib(size)
    );
    println!(
        "| cold start to ready, fresh state (median) | {:>7.1} ms |",
        ms(fresh)
    );
    println!(
        "| start to ready, existing state (median)   | {:>7.1} ms |",
        ms(warm)
    );
    println!(
        "| idle RSS of `operator run`                | {:>6.1} MiB |",
        rss as f64 / 1024.0
    );
    println!(
        "| per-turn overhead, median ({TURNS} turns)    | {:>7.0} µs |",
        median.as_secs_f64() * 1e6
    );
    println!(
        "| per-turn overhead, p99                    | {:>7.0} µs |",
        p99.as_secs_f64() * 1e6
    );
    println!(
        "| one store round trip (SELECT 1), median   | {:>7.0} µs |",
        ping.as_secs_f64() * 1e6
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Starts `operator run` repeatedly; returns median start on fresh and existing state, and the
/// idle RSS (KiB) of one run a second after it was ready.
fn start_and_memory() -> (Duration, Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("operator.toml");
    let mut fresh = Vec::new();
    let mut warm = Vec::new();
    let mut rss = 0;
    for i in 0..STARTS {
        let state = dir.path().join(format!("state{i}"));
        std::fs::write(
            &config,
            format!(
                "[state]\ndir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
                state.display().to_string()
            ),
        )
        .unwrap();
        fresh.push(chat_daemon::start_once(BIN, &config, false).0);
        let (elapsed, kib) = chat_daemon::start_once(BIN, &config, i == 0);
        warm.push(elapsed);
        if i == 0 {
            rss = kib;
        }
    }
    (median(fresh), median(warm), rss)
}

/// Time from handing a message to the router until its reply reaches the channel.
async fn turn_overhead() -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut bench = inproc::Bench::open(dir.path()).await;
    let mut samples = Vec::with_capacity(TURNS);
    for i in 0..TURNS {
        // 100 chats, so histories grow to a realistic 30 turns each.
        let text = format!("message number {i}: please check the status of the fleet");
        samples.push(bench.turn(&format!("chat{}", i % 100), text).await);
    }
    bench.close().await;
    inproc::median_p99(samples)
}

/// The floor under every store call: one trivial query through the pool.
async fn store_round_trip() -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_and_migrate(dir.path()).await.unwrap();
    let mut samples = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let started = Instant::now();
        store.ping().await.unwrap();
        samples.push(started.elapsed());
    }
    store.close().await;
    median(samples)
}
