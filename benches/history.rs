//! Cost as the state grows: a state with 100,000 conversations and 1,000,000 messages (with
//! their activity entries and usage rows) against an empty one, in one run:
//! per-turn overhead around a zero-latency model (in process, turns alternating between the two
//! states), start to ready and to the first `getUpdates` of the real binary with a Telegram bot
//! (fake Bot API), `operator check`, and the database's size at a tenth and at the full history.
//!
//! The states are built once with SQL and kept under the target directory's tmp
//! (`history-*.db`); later runs copy them. Run with `cargo bench --bench history`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[path = "support/inproc.rs"]
mod inproc;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const CONVERSATIONS: i64 = 100_000;
const MESSAGES_PER_CONVERSATION: i64 = 10;
const TURNS: usize = 2000;
const STARTS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let tenth = cached_state(&cache, CONVERSATIONS / 10).await;
    let full = cached_state(&cache, CONVERSATIONS).await;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (tenth_size, full_size) = (size(&tenth), size(&full));

    // Per-turn overhead: the same messages to the same new chats, alternating between states.
    let empty_dir = tempfile::tempdir().unwrap();
    let full_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&full, full_dir.path().join("operator.db")).unwrap();
    let mut empty = inproc::Bench::open(empty_dir.path()).await;
    let mut history = inproc::Bench::open(full_dir.path()).await;
    let (mut on_empty, mut on_history, mut on_old) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..TURNS {
        let chat = format!("bench{}", i % 100);
        let text = || format!("message number {i}: please check the status of the fleet");
        on_empty.push(empty.turn(&chat, text()).await);
        on_history.push(history.turn(&chat, text()).await);
        // A chat from the history (ten messages already), picked across the whole range.
        let old = format!("hist{}", (i as i64 * 7919) % CONVERSATIONS + 1);
        on_old.push(history.turn(&old, text()).await);
    }
    empty.close().await;
    history.close().await;
    let (empty_median, empty_p99) = inproc::median_p99(on_empty);
    let (history_median, history_p99) = inproc::median_p99(on_history);
    let (old_median, old_p99) = inproc::median_p99(on_old);

    // Start to ready with a Telegram bot, and `operator check`, on each state.
    let tg = telegram::FakeTelegram::start().await;
    let bot = tg.config("owners = [1]");
    let (empty_start, empty_poll, empty_check) = starts(None, &tg, &bot);
    let (full_start, full_poll, full_check) = starts(Some(&full), &tg, &bot);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!("| figure | empty state | 100k conversations, 1M messages | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| per-turn overhead, median ({TURNS} turns each) | {:.0} µs | {:.0} µs | {:.2}x |",
        us(empty_median),
        us(history_median),
        ratio(history_median, empty_median)
    );
    println!(
        "| per-turn overhead, p99 | {:.0} µs | {:.0} µs | {:.2}x |",
        us(empty_p99),
        us(history_p99),
        ratio(history_p99, empty_p99)
    );
    println!(
        "| per-turn overhead in a conversation from the history, median / p99 | | {:.0} / {:.0} µs | |",
        us(old_median),
        us(old_p99)
    );
    println!(
        "| start to ready with a Telegram bot (median of {STARTS}) | {:.1} ms | {:.1} ms | {:.2}x |",
        ms(empty_start),
        ms(full_start),
        ratio(full_start, empty_start)
    );
    println!(
        "| exec to the first `getUpdates` (median of {STARTS}) | {:.1} ms | {:.1} ms | {:.2}x |",
        ms(empty_poll),
        ms(full_poll),
        ratio(full_poll, empty_poll)
    );
    println!(
        "| `operator check` | {:.0} ms | {:.0} ms | {:.2}x |",
        ms(empty_check),
        ms(full_check),
        ratio(full_check, empty_check)
    );
    println!(
        "| database size: 10k conversations / 100k | {:.1} MiB | {:.1} MiB | {:.2}x |",
        tenth_size as f64 / 1048576.0,
        full_size as f64 / 1048576.0,
        full_size as f64 / tenth_size as f64
    );
}

/// The cached database with `conversations` conversations of ten messages each, built once.
async fn cached_state(cache: &Path, conversations: i64) -> PathBuf {
    let path = cache.join(format!("history-v1-{conversations}.db"));
    if path.exists() {
        return path;
    }
    let building = tempfile::tempdir_in(cache).unwrap();
    let store = operator::store::Store::open_and_migrate(building.path())
        .await
        .unwrap();
    store.close().await;
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(building.path().join("operator.db"));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let messages = conversations * MESSAGES_PER_CONVERSATION;
    let started = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        // Conversations with Operator, all open, each answered (in console chats, so the
        // in-process turns can reach them; the start reads every open one whatever its channel).
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {conversations}) \
             INSERT INTO conversations (id, agent, channel, chat_id, thread_id, created_at) \
             SELECT i, 'operator', 'console', 'hist' || i, '', 1700000000000 + i * 1000 FROM n"
        ),
        // Ten messages each, a person's and Operator's in turn, with receipts on the person's.
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {messages} - 1) \
             INSERT INTO messages (conversation_id, role, content, receipt, created_at) \
             SELECT i / {MESSAGES_PER_CONVERSATION} + 1, \
             CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, \
             CASE WHEN i % 2 = 0 THEN 'message ' || i || ': what is running on the fleet right now, and is anything failing?' \
             ELSE 'Three instances are active (web, db, worker); the last job #' || i || ' on worker finished with exit 0. Nothing is failing.' END, \
             CASE WHEN i % 2 = 0 THEN i ELSE NULL END, 1700000000000 + i * 100 FROM n"
        ),
        // An activity entry for each message, as the feed writes them.
        "INSERT INTO activity (at, kind, actor, role, agent, conversation_id, summary, detail) \
             SELECT created_at, CASE role WHEN 'user' THEN 'message.in' ELSE 'message.out' END, \
             CASE role WHEN 'user' THEN 'telegram:42' ELSE 'operator' END, \
             CASE role WHEN 'user' THEN 'owner' ELSE 'agent' END, 'operator', conversation_id, \
             substr(content, 1, 80), \
             CASE role WHEN 'assistant' THEN '{\"step\":1,\"input_tokens\":900,\"output_tokens\":40}' END \
             FROM messages"
            .to_string(),
        // A usage row for each answer.
        "INSERT INTO usage (at, agent, conversation_id, source, provider, model, input_tokens, \
         output_tokens, cost_usd) SELECT created_at, 'operator', conversation_id, 'chat', 'openai', \
         'gpt-4.1-mini', 900, 40, 0.0004 FROM messages WHERE role = 'assistant'"
            .to_string(),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("VACUUM").execute(&pool).await.unwrap();
    pool.close().await;
    std::fs::rename(building.path().join("operator.db"), &path).unwrap();
    eprintln!(
        "built {} ({conversations} conversations, {messages} messages) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    path
}

/// Median start to ready (the "ready" log line) of `operator run` with the bot, and one
/// `operator check`, on a copy of `state` (none: an empty state).
/// Median start to ready and exec to the first `getUpdates` (of `STARTS` each), and one
/// `operator check`, on a copy of `state` (none: an empty state).
fn starts(
    state: Option<&Path>,
    tg: &telegram::FakeTelegram,
    bot: &str,
) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    if let Some(state) = state {
        std::fs::copy(state, state_dir.join("operator.db")).unwrap();
    }
    let config = dir.path().join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n[docker]\nhost = \"unix:///nonexistent.sock\"\n{bot}",
            state_dir.display().to_string()
        ),
    )
    .unwrap();
    // The first start migrates an empty state; it is not counted.
    let _ = chat_daemon::start_once(BIN, &config, false);
    let mut times: Vec<Duration> = (0..STARTS)
        .map(|_| chat_daemon::start_once(BIN, &config, false).0)
        .collect();
    times.sort();
    let mut polls: Vec<Duration> = (0..STARTS).map(|_| first_poll(&config, tg)).collect();
    polls.sort();
    let started = Instant::now();
    // Its verdict does not matter here (no Docker engine, no model): only how long it takes.
    let _verdict = Command::new(chat_daemon::binary(BIN))
        .args(["check", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("operator check");
    let check_time = started.elapsed();
    (times[times.len() / 2], polls[polls.len() / 2], check_time)
}

/// From exec to the bot's first `getUpdates` (the fake records when each call arrived).
fn first_poll(config: &Path, tg: &telegram::FakeTelegram) -> Duration {
    let spawned = Instant::now();
    let mut child = Command::new(chat_daemon::binary(BIN))
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn operator");
    let mut polled = None;
    while polled.is_none() && spawned.elapsed() < Duration::from_secs(30) {
        polled = tg
            .calls()
            .iter()
            .filter(|c| c.method == "getUpdates" && c.at > spawned)
            .map(|c| c.at - spawned)
            .min();
        std::thread::sleep(Duration::from_millis(5));
    }
    chat_daemon::terminate(&mut child);
    polled.expect("the bot never polled")
}
