//! Discord figures, printed as one table: messages per second answered end to end (real binary,
//! real serenity, fake gateway and REST, zero-latency fake model, durable writes), and the time
//! from `INTERACTION_CREATE` to the deferral (median, p99), and the idle RSS with this bot and
//! a Telegram bot (fake Bot API) connected.
//!
//! Run with `cargo bench --bench discord`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[allow(dead_code)]
#[path = "../tests/support/discord.rs"]
mod discord;
#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::time::{Duration, Instant};

use discord::FakeDiscord;
use llm::{FakeLlm, Vendor};

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const MESSAGES: usize = 2000;
const INTERACTIONS: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn wait(check: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    check()
}

async fn run() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let fake = FakeDiscord::start().await;
    let tg = telegram::FakeTelegram::start().await;
    let daemon = chat_daemon::Daemon::start(
        BIN,
        &llm.base_url,
        &format!(
            "{}{}",
            fake.config(chat_daemon::OPEN_AND_UNPACED),
            tg.config(chat_daemon::OPEN_AND_UNPACED)
        ),
    );
    assert!(
        wait(|| fake.identifies() >= 1, Duration::from_secs(30)).await,
        "never identified"
    );
    tg.expect_polling().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = chat_daemon::rss_kib(daemon.child.id());
    let (interactions, messages) = (
        chat_daemon::count(INTERACTIONS),
        chat_daemon::count(MESSAGES),
    );

    // Deferral latency: one slash command at a time.
    let mut samples = Vec::with_capacity(interactions);
    for i in 0..interactions {
        let started = Instant::now();
        let id = fake.slash(7_000 + i as u64 % 20, 1, "status", &[]);
        assert!(
            wait(|| fake.deferred_at(id).is_some(), Duration::from_secs(30)).await,
            "never deferred"
        );
        samples.push(fake.deferred_at(id).unwrap() - started);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];

    // Throughput: many messages over many DM channels, until every one is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = fake.posts();
    let db = daemon.db_mark();
    let switches_before = daemon.context_switches();
    let calls_before = fake.calls().len();
    let started = Instant::now();
    for i in 0..messages {
        fake.message(
            10_000 + i as u64 % 500,
            None,
            2 + i as u64 % 500,
            &format!("load {i}"),
        );
    }
    assert!(
        wait(
            || fake.posts() >= before + messages,
            Duration::from_secs(300)
        )
        .await,
        "not all answered: {}",
        fake.posts() - before
    );
    let per_second = messages as f64 / started.elapsed().as_secs_f64();
    let switches = (daemon.context_switches() - switches_before) as f64 / messages as f64;
    let calls = (fake.calls().len() - calls_before) as f64 / messages as f64;
    let (statements, commits) = daemon.db_per(&db, messages).await;

    daemon.stop();

    println!();
    println!("| figure                                            | value        |");
    println!("|---------------------------------------------------|--------------|");
    println!("| messages answered per second ({messages} over 500 DMs) | {per_second:>8.0} /s  |");
    println!("| SQL statements per answered message               | {statements:>12.1} |");
    println!("| commits per answered message                      | {commits:>12.2} |");
    println!("| daemon context switches per answered message      | {switches:>12.1} |");
    println!("| REST calls per answered message                   | {calls:>12.2} |");
    println!(
        "| INTERACTION_CREATE -> deferral, median            | {:>9.2} ms |",
        median.as_secs_f64() * 1000.0
    );
    println!(
        "| INTERACTION_CREATE -> deferral, p99               | {:>9.2} ms |",
        p99.as_secs_f64() * 1000.0
    );
    println!(
        "| idle RSS, Discord and Telegram bots connected     | {:>8.1} MiB |",
        idle as f64 / 1024.0
    );
}
