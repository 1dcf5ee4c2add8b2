//! Replies shown while the model writes them, shared by the chat platforms: one updater task
//! per chat that shows the latest text at most once per interval (a draft, or one message
//! edited in place), and hands over what it showed when the final answer is queued, so the
//! answer can replace it. A platform supplies a [`Surface`]: how one update is shown.
//!
//! Nothing here is durable: a message created for a growing reply is recorded by the platform
//! (so a restart can take it back), and the final answer always goes through the outbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::llm::BoxFuture;
use crate::domain::ChatRef;

/// The longest one update may take before the updater gives up on it.
const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

/// What a growing reply is shown as so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A draft (Telegram `sendMessageDraft`) with this id: it goes away by itself.
    Draft(i64),
    /// A real message with this platform id, edited as the text grows.
    Message(String),
}

/// A platform's way of showing a growing reply.
pub trait Surface: Send + Sync + 'static {
    /// Shows `text` in `chat`; `shown` is what the last update there returned. Returns what
    /// is shown now (the same draft or message, or a new one after a fallback).
    fn show<'a>(
        &'a self,
        chat: &'a ChatRef,
        text: &'a str,
        shown: Option<&'a Shown>,
    ) -> BoxFuture<'a, Result<Shown, String>>;
    /// The least time between two updates in one chat.
    fn interval(&self, chat: &ChatRef, shown: Option<&Shown>) -> Duration;
}

struct Updater {
    text: watch::Sender<String>,
    done: CancellationToken,
    task: JoinHandle<Option<Shown>>,
}

/// The growing replies of one bot, by chat.
pub struct Live<S: Surface> {
    surface: Arc<S>,
    chats: Mutex<HashMap<ChatRef, Updater>>,
}

impl<S: Surface> Live<S> {
    pub fn new(surface: Arc<S>) -> Self {
        Self {
            surface,
            chats: Mutex::new(HashMap::new()),
        }
    }

    /// The reply in `chat` is now `text`: shown at the updater's next chance.
    pub fn update(&self, chat: &ChatRef, text: String) {
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(updater) = chats.get(chat) {
            updater.text.send_replace(text);
            return;
        }
        let (tx, rx) = watch::channel(text);
        let done = CancellationToken::new();
        let task = tokio::spawn(run(self.surface.clone(), chat.clone(), rx, done.clone()));
        chats.insert(
            chat.clone(),
            Updater {
                text: tx,
                done,
                task,
            },
        );
    }

    /// For an answer about to be queued: when it ends a turn, the growing reply stops and the
    /// answer's rows replace (or delete) what it showed (see [`super::durable::replace_live`]).
    /// Returns whether a message was in place, so the queueing forgets it in its transaction.
    pub async fn settle(
        &self,
        chat: &ChatRef,
        ends_turn: bool,
        rows: &mut Vec<crate::store::NewOutbox>,
        reply_kind: &str,
    ) -> bool {
        if !ends_turn {
            return false;
        }
        let shown = self.finish(chat).await;
        super::durable::replace_live(rows, chat, shown, reply_kind)
    }

    /// Stops showing the growing reply of `chat` and returns what is shown, once no update is
    /// in flight any more (so none can land after the final answer).
    pub async fn finish(&self, chat: &ChatRef) -> Option<Shown> {
        let updater = self
            .chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(chat)?;
        updater.done.cancel();
        updater.task.await.ok().flatten()
    }
}

/// Records a message created for a growing reply, so the next start can take it back if a
/// crash leaves it; a failure to record is logged (the reply still shows).
pub async fn remember(store: &crate::store::Store, channel: &str, chat: &ChatRef, id: &str) {
    if let Err(e) = store
        .remember_live_reply(channel, &chat.chat_id, &chat.thread_id, id)
        .await
    {
        tracing::warn!(bot = %channel, "cannot record a growing reply: {e}");
    }
}

/// One chat's updater: shows the newest text, waits out the interval, and again, until done.
async fn run<S: Surface>(
    surface: Arc<S>,
    chat: ChatRef,
    mut text: watch::Receiver<String>,
    done: CancellationToken,
) -> Option<Shown> {
    let mut shown: Option<Shown> = None;
    // The first text is there already.
    let mut fresh = true;
    loop {
        if !fresh {
            tokio::select! {
                biased;
                () = done.cancelled() => return shown,
                changed = text.changed() => if changed.is_err() { return shown },
            }
        }
        fresh = false;
        let current = text.borrow_and_update().clone();
        if current.trim().is_empty() {
            continue;
        }
        match tokio::time::timeout(SHOW_TIMEOUT, surface.show(&chat, &current, shown.as_ref()))
            .await
        {
            Ok(Ok(now)) => shown = Some(now),
            Ok(Err(e)) => tracing::debug!(%chat, "a growing reply could not be shown: {e}"),
            Err(_) => tracing::debug!(%chat, "showing a growing reply timed out"),
        }
        let wait = surface.interval(&chat, shown.as_ref());
        tokio::select! {
            biased;
            () = done.cancelled() => return shown,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
