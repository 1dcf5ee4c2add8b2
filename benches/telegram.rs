//! Telegram figures, printed as one table: updates per second routed and answered end to end
//! (real binary, real teloxide client, fake Bot API and a zero-latency fake model, durable
//! writes), latency from update to `sendMessage` (median, p99), idle RSS with the bot connected,
//! and RSS after 10,000 distinct chats.
//!
//! Run with `cargo bench --bench telegram`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::time::{Duration, Instant};

use chat_daemon::rss_kib;
use llm::{FakeLlm, Vendor};
use telegram::FakeTelegram;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const THROUGHPUT_UPDATES: usize = 5000;
const LATENCY_SAMPLES: usize = 300;
const CHATS: u64 = 10_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// CPU time the process has used (user + system), from /proc (clock ticks of 10 ms).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the command name: state is field 0, utime field 11, stime field 12.
    (ticks(11) + ticks(12)) * 10
}

async fn run() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let daemon = chat_daemon::Daemon::start(
        BIN,
        &llm.base_url,
        &tg.config(chat_daemon::OPEN_AND_UNPACED),
    );
    let pid = daemon.child.id();
    let (latency_samples, throughput_updates, chats) = (
        chat_daemon::count(LATENCY_SAMPLES),
        chat_daemon::count(THROUGHPUT_UPDATES),
        chat_daemon::count(CHATS as usize) as u64,
    );
    tg.expect_polling().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);

    // Latency: one update at a time, from injection to its sendMessage.
    let mut samples = Vec::with_capacity(latency_samples);
    for i in 0..latency_samples {
        let before = tg.accepted_sends();
        let started = Instant::now();
        tg.direct(1_000_000 + (i as u64 % 50), &format!("latency {i}"));
        assert!(
            tg.wait_sends(before + 1, Duration::from_secs(30)).await,
            "no answer"
        );
        samples.push(started.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];

    // Throughput: many updates at once over many chats, until every one is answered.
    let db = daemon.db_mark();
    let before = tg.accepted_sends();
    let cpu_before = cpu_ms(pid);
    let switches_before = daemon.context_switches();
    let calls_before = tg.calls().len();
    let started = Instant::now();
    for i in 0..throughput_updates {
        tg.direct(2_000_000 + (i as u64 % 1000), &format!("load {i}"));
    }
    assert!(
        tg.wait_sends(before + throughput_updates, Duration::from_secs(300))
            .await,
        "not all answered"
    );
    let elapsed = started.elapsed();
    let cpu_per_update = (cpu_ms(pid) - cpu_before) as f64 / throughput_updates as f64;
    let switches = (daemon.context_switches() - switches_before) as f64 / throughput_updates as f64;
    let calls = (tg.calls().len() - calls_before) as f64 / throughput_updates as f64;
    let per_second = throughput_updates as f64 / elapsed.as_secs_f64();
    let (statements, commits) = daemon.db_per(&db, throughput_updates).await;

    // Memory after many distinct chats.
    let before = tg.accepted_sends();
    for i in 0..chats {
        tg.direct(3_000_000 + i, "hi");
    }
    assert!(
        tg.wait_sends(before + chats as usize, Duration::from_secs(300))
            .await,
        "not all chats answered"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let many = rss_kib(pid);
    // Once no turn has started for a second the daemon gives memory back (src/memory.rs).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let many_later = rss_kib(pid);

    daemon.stop();

    println!();
    println!("| figure                                              | value        |");
    println!("|-----------------------------------------------------|--------------|");
    println!(
        "| updates answered per second ({throughput_updates} over 1,000 chats)   | {per_second:>8.0} /s  |"
    );
    println!("| daemon CPU per update under load                     | {cpu_per_update:>9.2} ms |");
    println!("| daemon context switches per answered update          | {switches:>12.1} |");
    println!("| Bot API calls per answered update                    | {calls:>12.2} |");
    println!("| SQL statements per answered update                   | {statements:>12.1} |");
    println!("| commits per answered update                          | {commits:>12.2} |");
    println!(
        "| update -> sendMessage latency, median                | {:>9.2} ms |",
        median.as_secs_f64() * 1000.0
    );
    println!(
        "| update -> sendMessage latency, p99                   | {:>9.2} ms |",
        p99.as_secs_f64() * 1000.0
    );
    println!(
        "| idle RSS, bot connected                              | {:>8.1} MiB |",
        idle as f64 / 1024.0
    );
    println!(
        "| RSS after {chats} distinct chats                      | {:>8.1} MiB |",
        many as f64 / 1024.0
    );
    println!(
        "| RSS 5 s after {chats} distinct chats                  | {:>8.1} MiB |",
        many_later as f64 / 1024.0
    );
}
