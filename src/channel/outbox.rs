//! The outbox sender every durable channel shares: delivers a channel's queued messages in
//! order per chat, several chats at a time, within the bot's and each chat's rate, honouring
//! the platform's retry-after, retrying transient failures, and editing one progress message
//! in place. A row leaves the outbox only once the platform accepted it (or refused it for
//! good). The platform's part is a [`Courier`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::agent::llm::BoxFuture;
use crate::store::{NewActivity, OutboxRow, Store};

/// Sends in flight at once, over all chats (one per chat).
const MAX_IN_FLIGHT: usize = 8;
/// Rows read from the store at a time.
const BATCH: i64 = 1000;
/// Transient failures of one message before it is given up.
const MAX_ATTEMPTS: u32 = 12;

/// Why one delivery attempt failed.
pub enum Failure {
    /// The platform asked to wait this long (Telegram `retry_after`, Discord 429).
    RetryAfter(Duration),
    /// Worth trying again later (network, 5xx).
    Transient(String),
    /// Never going to work (chat gone, bot blocked): dropped and reported.
    Permanent(String),
}

/// A platform's side of the outbox: how one row is delivered.
pub trait Courier: Send + Sync + 'static {
    /// The channel id the rows are stored under.
    fn channel(&self) -> &str;
    fn store(&self) -> &Store;
    /// Messages per second for the bot, and for one chat.
    fn rates(&self) -> (f64, f64);
    /// Delivers one row; `edit` is the platform id of the chat's progress message, if any.
    /// Returns the id of the message shown (kept for progress rows).
    fn deliver<'a>(
        &'a self,
        row: &'a OutboxRow,
        edit: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<String>, Failure>>;
}

type Sent = (OutboxRow, Result<Option<String>, Failure>);

fn chat_key(row: &OutboxRow) -> String {
    format!("{}/{}", row.chat_id, row.thread_id)
}

/// Delivers a channel's outbox until `shutdown`, then until it is empty (the caller bounds
/// that wait). `wake` is notified when rows are queued.
pub async fn run(courier: Arc<dyn Courier>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let bot = courier;
    let (per_bot, per_chat) = bot.rates();
    let bot_interval = Duration::from_secs_f64(1.0 / per_bot);
    let chat_interval = Duration::from_secs_f64(1.0 / per_chat);
    // Each row with its chat key, computed once when the row is read.
    let mut queue: BTreeMap<i64, (String, OutboxRow)> = BTreeMap::new();
    let mut last_id = 0;
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut blocked: HashMap<String, Instant> = HashMap::new();
    let mut attempts: HashMap<i64, u32> = HashMap::new();
    let mut progress: HashMap<String, String> = HashMap::new();
    let mut next_slot = Instant::now();
    let mut tasks: JoinSet<Sent> = JoinSet::new();
    let mut refill = true;
    // The last read filled a whole batch: more rows may be waiting in the store. Otherwise every
    // new row comes with a `wake`, and a finished delivery need not read the store again.
    let mut more = false;
    loop {
        // Stopping: whatever is queued still goes out, then the sender ends.
        let stopping = shutdown.is_cancelled() && tasks.is_empty() && queue.is_empty();
        if refill || stopping {
            refill = false;
            match bot
                .store()
                .outbox_after(bot.channel(), last_id, BATCH)
                .await
            {
                Ok(rows) => {
                    more = rows.len() >= BATCH as usize;
                    for row in rows {
                        last_id = last_id.max(row.id);
                        queue.insert(row.id, (chat_key(&row), row));
                    }
                    // Waits that have passed say nothing any more.
                    let now = Instant::now();
                    blocked.retain(|_, until| *until > now);
                }
                Err(e) => tracing::error!(bot = %bot.channel(), "cannot read the outbox: {e}"),
            }
        }
        if stopping && queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut wake_at = now + Duration::from_secs(30);
        {
            // Only the oldest row of each chat may go, and only when none of its is in flight.
            let mut heads: HashSet<&str> = HashSet::new();
            for (key, row) in queue.values() {
                if !heads.insert(key) || in_flight.contains(key) {
                    continue;
                }
                if tasks.len() >= MAX_IN_FLIGHT {
                    break;
                }
                if let Some(until) = blocked.get(key).filter(|t| **t > now) {
                    wake_at = wake_at.min(*until);
                    continue;
                }
                if next_slot > now {
                    wake_at = wake_at.min(next_slot);
                    break;
                }
                next_slot = next_slot.max(now) + bot_interval;
                blocked.insert(key.clone(), now + chat_interval);
                let edit = progress.get(key).cloned();
                in_flight.insert(key.clone());
                let (bot, row) = (bot.clone(), row.clone());
                tasks.spawn(async move {
                    let result = bot.deliver(&row, edit.as_deref()).await;
                    // Out of the outbox before anyone hears it was sent.
                    if !matches!(result, Err(Failure::RetryAfter(_) | Failure::Transient(_)))
                        && let Err(e) = bot.store().outbox_delivered(row.id).await
                    {
                        tracing::error!(bot = %bot.channel(), "cannot remove a sent message from the outbox: {e}");
                    }
                    (row, result)
                });
            }
        }
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((row, result)) = done else { continue };
                let key = chat_key(&row);
                in_flight.remove(&key);
                match result {
                    Ok(message) => {
                        queue.remove(&row.id);
                        attempts.remove(&row.id);
                        match (row.kind.as_str(), message) {
                            ("progress", Some(id)) => { progress.insert(key, id); }
                            ("progress", None) => {}
                            _ => { progress.remove(&key); }
                        }
                    }
                    Err(Failure::RetryAfter(wait)) => {
                        tracing::info!(bot = %bot.channel(), chat = %key, "the platform asked to wait {wait:?}");
                        blocked.insert(key, Instant::now() + wait);
                    }
                    Err(Failure::Transient(reason)) => {
                        let n = attempts.entry(row.id).or_insert(0);
                        *n += 1;
                        if *n >= MAX_ATTEMPTS {
                            give_up(bot.as_ref(), &row, &format!("{reason} ({n} attempts)")).await;
                            queue.remove(&row.id);
                            attempts.remove(&row.id);
                        } else {
                            let wait = Duration::from_millis(500) * 2u32.pow((*n).min(7));
                            blocked.insert(key, Instant::now() + wait);
                        }
                    }
                    Err(Failure::Permanent(reason)) => {
                        queue.remove(&row.id);
                        attempts.remove(&row.id);
                        report_undeliverable(bot.as_ref(), &row, &reason);
                    }
                }
                if more && queue.len() < BATCH as usize / 2 {
                    refill = true;
                }
            }
            _ = wake.notified() => refill = true,
            _ = tokio::time::sleep_until(wake_at) => refill = queue.is_empty(),
            _ = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
    }
}

async fn give_up(bot: &dyn Courier, row: &OutboxRow, reason: &str) {
    if let Err(e) = bot.store().outbox_delivered(row.id).await {
        tracing::error!(bot = %bot.channel(), "cannot drop a message from the outbox: {e}");
    }
    report_undeliverable(bot, row, reason);
}

fn report_undeliverable(bot: &dyn Courier, row: &OutboxRow, reason: &str) {
    tracing::error!(bot = %bot.channel(), chat = %row.chat_id, "message not delivered: {reason}");
    bot.store().record(NewActivity {
        kind: "message.undeliverable".into(),
        actor: bot.channel().to_string(),
        summary: format!(
            "a message to chat {} was not delivered: {reason}",
            row.chat_id
        ),
        ..NewActivity::default()
    });
}
