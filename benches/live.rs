//! Live-conversation figures, printed as one table: time from the model's first piece of text
//! to the first visible draft (Telegram `sendMessageDraft`) or partial message (the edit
//! fallback), median and p99, over a fake model streaming at a steady pace; drafts and edits
//! per reply; and how long an idle daemon takes to exit on SIGTERM, bare and with a bot
//! polling (median of runs; the process is our child, so the time ends when it is reaped).
//!
//! Run with `cargo bench --bench live`.

#[path = "support/chat_daemon.rs"]
mod chat_daemon;
#[allow(dead_code)]
#[path = "../tests/support/llm.rs"]
mod llm;
#[allow(dead_code)]
#[path = "../tests/support/telegram.rs"]
mod telegram;

use std::time::{Duration, Instant};

use llm::{FakeLlm, Vendor};
use telegram::FakeTelegram;

const BIN: &str = env!("CARGO_BIN_EXE_operator");
/// Replies streamed per mode.
const REPLIES: usize = 40;
/// The pace of the fake model's pieces.
const PACE: Duration = Duration::from_millis(25);
const STOP_RUNS: usize = 5;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A reply of about forty pieces: a second of writing at the fake's pace.
fn reply(i: usize) -> String {
    (0..40)
        .map(|w| format!("word{i}x{w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Streamed {
    first_visible: Vec<Duration>,
    per_reply: f64,
}

/// Streams `REPLIES` replies into one private chat and measures the first visible update of
/// each, by the method that shows it.
async fn streamed(drafts: bool) -> Streamed {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.stream_slowly(PACE);
    let tg = FakeTelegram::start().await;
    if !drafts {
        tg.refuse_drafts();
    }
    let daemon = chat_daemon::Daemon::start(
        BIN,
        &llm.base_url,
        &tg.config(chat_daemon::OPEN_AND_UNPACED),
    );
    tg.expect_polling().await;
    let chat = 4242u64;
    let mut first_visible = Vec::new();
    let mut updates = 0usize;
    for i in 0..REPLIES {
        llm.reply_text(&reply(i));
        let before = tg.calls().len();
        tg.direct(chat, &format!("message {i}"));
        let done = tg
            .wait_until(Duration::from_secs(30), |_| {
                tg.sent_to(chat as i64).last() == Some(&reply(i))
            })
            .await;
        assert!(done, "reply {i} never arrived");
        let first_piece = *llm.first_pieces().last().expect("a streamed reply");
        let calls = tg.calls();
        let shown: Vec<&telegram::Call> = calls[before..]
            .iter()
            .filter(|c| match drafts {
                true => c.method == "sendMessageDraft",
                false => {
                    (c.method == "sendMessage" || c.method == "editMessageText")
                        && c.body["parse_mode"].is_null()
                }
            })
            .collect();
        updates += shown.len();
        if let Some(first) = shown.first() {
            first_visible.push(first.at.saturating_duration_since(first_piece));
        }
    }
    daemon.stop();
    first_visible.sort();
    Streamed {
        first_visible,
        per_reply: updates as f64 / REPLIES as f64,
    }
}

/// Median time from SIGTERM to exit of an idle daemon, with or without a polling bot.
async fn idle_stop(with_bot: bool) -> Duration {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let platform = if with_bot {
        tg.config(chat_daemon::OPEN_AND_UNPACED)
    } else {
        String::new()
    };
    let mut times = Vec::new();
    for _ in 0..STOP_RUNS {
        let mut daemon = chat_daemon::Daemon::start(BIN, &llm.base_url, &platform);
        // Ready: with a bot, polling; bare, a moment after start.
        if with_bot {
            let polls = tg.calls_of("getUpdates").len();
            tg.wait_until(Duration::from_secs(30), |calls| {
                calls.iter().filter(|c| c.method == "getUpdates").count() > polls
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let asked = Instant::now();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &daemon.child.id().to_string()])
            .status();
        let status = daemon.child.wait().expect("wait");
        times.push(asked.elapsed());
        assert!(status.success(), "exit status {status:?}");
    }
    times.sort();
    times[times.len() / 2]
}

async fn run() {
    let drafts = streamed(true).await;
    let edits = streamed(false).await;
    let bare_stop = idle_stop(false).await;
    let bot_stop = idle_stop(true).await;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| first piece -> first draft, median / p99 ({REPLIES} replies, {} ms pace) | {} / {} |",
        PACE.as_millis(),
        ms(percentile(&drafts.first_visible, 0.5)),
        ms(percentile(&drafts.first_visible, 0.99))
    );
    println!(
        "| drafts per reply (about 1 s of writing) | {:.1} |",
        drafts.per_reply
    );
    println!(
        "| first piece -> first partial message (no drafts), median / p99 | {} / {} |",
        ms(percentile(&edits.first_visible, 0.5)),
        ms(percentile(&edits.first_visible, 0.99))
    );
    println!(
        "| partial message and edits per reply (no drafts) | {:.1} |",
        edits.per_reply
    );
    println!(
        "| idle SIGTERM -> exit, bare (median of {STOP_RUNS}) | {} |",
        ms(bare_stop)
    );
    println!(
        "| idle SIGTERM -> exit, Telegram bot polling (median of {STOP_RUNS}) | {} |",
        ms(bot_stop)
    );
}
