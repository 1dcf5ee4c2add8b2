//! Backup figures, printed as one table: `operator backup` and `operator restore` times and the
//! archive's size for a database with 100,000 messages (built once, directly through SQLite),
//! and the pause a backup causes to message handling: update -> `sendMessage` latency of a
//! steady flow through the fake Bot API, without a backup running and while one runs.
//!
//! Run with `cargo bench --bench backup`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use llm::{FakeLlm, Vendor};
use telegram::FakeTelegram;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
const MESSAGES: i64 = 100_000;
const CONVERSATIONS: i64 = 1_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// A state with `MESSAGES` messages over `CONVERSATIONS` conversations.
async fn build_state(dir: &Path) {
    let store = operator::store::Store::open_and_migrate(dir).await.unwrap();
    store.close().await;
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("operator.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    for c in 0..CONVERSATIONS {
        sqlx::query(
            "INSERT INTO conversations (agent, channel, chat_id, thread_id, created_at) \
             VALUES ('operator', 'telegram:1', $1, '', 0)",
        )
        .bind(c.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    for m in 0..MESSAGES {
        let role = if m % 2 == 0 { "user" } else { "assistant" };
        sqlx::query(
            "INSERT INTO messages (conversation_id, role, content, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(m % CONVERSATIONS + 1)
        .bind(role)
        .bind(format!(
            "message {m}: a line of ordinary chat text, about as long as people write"
        ))
        .bind(m)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn config(dir: &Path, state: &Path) -> std::path::PathBuf {
    let path = dir.join("operator.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\ndir = {:?}\n[docker]\nhost = \"unix:///nonexistent.sock\"\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn timed(args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(BIN).args(args).output().expect("run operator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Latencies of a steady flow of messages (one every 20 ms for `span`), with `during` run in
/// the middle of it.
async fn flow(tg: &FakeTelegram, span: Duration, during: impl FnOnce()) -> Vec<Duration> {
    let chat = 777u64;
    let sent_before = tg.sent_to(chat as i64).len();
    let mut injected = Vec::new();
    let started = Instant::now();
    let mut during = Some(during);
    while started.elapsed() < span {
        injected.push(Instant::now());
        tg.direct(chat, &format!("flow {}", injected.len()));
        if started.elapsed() > span / 3
            && let Some(run) = during.take()
        {
            run();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = sent_before + injected.len();
    tg.wait_until(Duration::from_secs(60), |_| {
        tg.sent_to(chat as i64).len() >= want
    })
    .await;
    let sends: Vec<Instant> = tg
        .calls()
        .into_iter()
        .filter(|c| c.method == "sendMessage" && c.body["chat_id"].as_i64() == Some(chat as i64))
        .map(|c| c.at)
        .skip(sent_before)
        .collect();
    let mut latencies: Vec<Duration> = injected
        .iter()
        .zip(sends.iter())
        .map(|(a, b)| b.saturating_duration_since(*a))
        .collect();
    latencies.sort();
    latencies
}

async fn run() {
    let cache = std::env::temp_dir().join("operator-bench-backup-100k");
    if !cache.join("operator.db").is_file() {
        let _ = std::fs::remove_dir_all(&cache);
        build_state(&cache).await;
    }
    let work = tempfile::tempdir().unwrap();
    let conf = config(work.path(), &cache);
    let conf = conf.to_str().unwrap();
    let archive = work.path().join("big.tar.gz");
    let backup = timed(&[
        "backup",
        "--config",
        conf,
        "--out",
        archive.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&archive).unwrap().len();
    let db_size = std::fs::metadata(cache.join("operator.db")).unwrap().len();
    let target = work.path().join("restored");
    let restore = timed(&[
        "restore",
        archive.to_str().unwrap(),
        "--config",
        conf,
        "--state",
        target.to_str().unwrap(),
    ]);

    // The pause: a daemon answering a steady flow while `operator backup` runs on its state.
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.echo();
    let tg = FakeTelegram::start().await;
    let daemon = chat_daemon::Daemon::start_from(
        BIN,
        &llm.base_url,
        &tg.config(chat_daemon::OPEN_AND_UNPACED),
        Some(&cache),
    );
    tg.expect_polling().await;
    let state = daemon.state_dir();
    let quiet = flow(&tg, Duration::from_secs(3), || {}).await;
    std::fs::create_dir_all(work.path().join("live")).unwrap();
    let live_conf = config(&work.path().join("live"), &state);
    let live_archive = work.path().join("live.tar.gz");
    let busy = flow(&tg, Duration::from_secs(3), || {
        let conf = live_conf.clone();
        let out = live_archive.clone();
        std::thread::spawn(move || {
            timed(&[
                "backup",
                "--config",
                conf.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
        });
    })
    .await;
    daemon.stop();

    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| database with {MESSAGES} messages | {:.1} MiB |",
        db_size as f64 / 1048576.0
    );
    println!("| `operator backup` | {} |", ms(backup));
    println!("| archive size | {:.1} MiB |", size as f64 / 1048576.0);
    println!(
        "| `operator restore` (checks every member) | {} |",
        ms(restore)
    );
    println!(
        "| update -> sendMessage, median / max, no backup | {} / {} |",
        ms(percentile(&quiet, 0.5)),
        ms(*quiet.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| update -> sendMessage, median / max, backup running | {} / {} |",
        ms(percentile(&busy, 0.5)),
        ms(*busy.last().unwrap_or(&Duration::ZERO))
    );
}
