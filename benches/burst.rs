//! Memory under a burst, measured from outside on the real binary: 2,000 messages from 200
//! Telegram chats queued at once (fake Bot API, zero-latency fake model), RSS sampled every
//! 20 ms from /proc while they are answered, then 10 s and 60 s after the last answer. Run
//! twice in one process: turns uncapped (`[operator] max_turns = 100000`) and at the default
//! cap (eight per core), so the two are compared on the same machine state.
//!
//! Run with `cargo bench --bench burst`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_daemon::rss_kib;
use llm::{FakeLlm, Vendor};
use telegram::FakeTelegram;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const CHATS: u64 = 200;
const MESSAGES: usize = 2000;

struct Figures {
    idle: u64,
    peak: u64,
    answered: u64,
    after_10s: u64,
    after_60s: u64,
    seconds: f64,
}

async fn burst(max_turns: &str) -> Figures {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let platform = format!(
        "{}\n[operator]\nmax_turns = {max_turns}\n",
        tg.config(chat_daemon::OPEN_AND_UNPACED)
    );
    let daemon = chat_daemon::Daemon::start(BIN, &llm.base_url, &platform);
    let pid = daemon.child.id();
    tg.expect_polling().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(idle));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let before = tg.accepted_sends();
    let started = Instant::now();
    for i in 0..MESSAGES {
        tg.direct(5_000_000 + (i as u64 % CHATS), &format!("burst {i}"));
    }
    assert!(
        tg.wait_sends(before + MESSAGES, Duration::from_secs(600))
            .await,
        "not all answered"
    );
    let seconds = started.elapsed().as_secs_f64();
    let answered = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after_10s = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(50)).await;
    let after_60s = rss_kib(pid);
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    daemon.stop();
    Figures {
        idle,
        peak: peak.load(Ordering::Relaxed),
        answered,
        after_10s,
        after_60s,
        seconds,
    }
}

#[tokio::main]
async fn main() {
    let uncapped = burst("100000").await;
    let capped = burst("0").await;
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\nBurst: {MESSAGES} messages from {CHATS} chats at once, zero-latency model (2 cores)\n"
    );
    println!("| figure | turns uncapped | max_turns default (8/core) |");
    println!("|---|---|---|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.1} {unit} | {b:.1} {unit} |");
    };
    row(
        "RSS idle, before",
        mib(uncapped.idle),
        mib(capped.idle),
        "MiB",
    );
    row("RSS peak", mib(uncapped.peak), mib(capped.peak), "MiB");
    row(
        "RSS when the last is answered",
        mib(uncapped.answered),
        mib(capped.answered),
        "MiB",
    );
    row(
        "RSS 10 s after",
        mib(uncapped.after_10s),
        mib(capped.after_10s),
        "MiB",
    );
    row(
        "RSS 60 s after",
        mib(uncapped.after_60s),
        mib(capped.after_60s),
        "MiB",
    );
    row("all answered in", uncapped.seconds, capped.seconds, "s");
}
