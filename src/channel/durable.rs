//! What the durable chat channels (Telegram, Discord) share besides the outbox sender: sealing
//! what they store, turning outbound messages into outbox rows, queueing them (settling the
//! answered message in the same transaction), and keeping "typing…" alive while an agent works.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::live::Shown;
use super::{Attachment, ChannelError, Outbound, Receipt};
use crate::domain::ChatRef;
use crate::domain::{MAX_FILE_BYTES, safe_name};
use crate::secrets::MasterKey;
use crate::store::{NewOutbox, Store};

/// Typing lasts this long at most without an answer.
const TYPING_FOR_AT_MOST: Duration = Duration::from_secs(300);

/// Typing is first shown this long after work starts: an answer that comes sooner (a command,
/// a quick model) needs no indicator, and the platform call it would cost is saved. Too short
/// for a person to notice the wait.
const TYPING_AFTER: Duration = Duration::from_millis(250);

/// A stored payload sealed with the master key, bound to the channel and its id.
pub fn seal(key: &MasterKey, channel: &str, id: i64, json: &str) -> String {
    let sealed = key.seal(&format!("{channel}/{id}"), json.as_bytes());
    format!("sealed:{}:{sealed}", key.fingerprint())
}

/// The payload [`seal`] stored (plain JSON from before sealing is returned as it is).
pub fn open(key: &MasterKey, channel: &str, id: i64, stored: &str) -> Result<String, String> {
    let Some(rest) = stored.strip_prefix("sealed:") else {
        return Ok(stored.to_string());
    };
    let (key_id, sealed) = rest.split_once(':').ok_or("a damaged sealed payload")?;
    let bytes = key
        .open(&format!("{channel}/{id}"), sealed, key_id)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// How a platform wants its rows.
pub struct RowStyle {
    /// Splits a text into messages within the platform's limit.
    pub split: fn(&str) -> Vec<String>,
    /// The row kind of replies, and of notices and failures (a platform may format replies
    /// but send its own notices as plain text).
    pub reply: &'static str,
    pub notice: &'static str,
}

/// Outbox rows for outbound messages. A file is kept under `files_dir/outgoing` until it is
/// sent; typing is not a row.
pub fn rows(
    chat: &ChatRef,
    parts: Vec<Outbound>,
    style: &RowStyle,
    files_dir: &Path,
) -> Result<Vec<NewOutbox>, ChannelError> {
    let row = |kind: &'static str, text: String| NewOutbox {
        chat_id: chat.chat_id.clone(),
        thread_id: chat.thread_id.clone(),
        kind,
        text,
    };
    let mut rows = Vec::new();
    for part in parts {
        let (kind, text) = match part {
            // A growing reply is shown by the channel itself, never queued.
            Outbound::Typing | Outbound::Partial(_) => continue,
            Outbound::Retract(id) => {
                rows.push(row("delete", id));
                continue;
            }
            Outbound::File { name, bytes } => {
                let path = keep_outgoing(files_dir, &name, &bytes)?;
                let spec = serde_json::json!({ "path": path, "name": name });
                rows.push(row("file", spec.to_string()));
                continue;
            }
            Outbound::Voice(bytes) => {
                let name = "reply.ogg";
                let path = keep_outgoing(files_dir, name, &bytes)?;
                let spec = serde_json::json!({ "path": path, "name": name, "voice": true });
                rows.push(row("file", spec.to_string()));
                continue;
            }
            Outbound::Approval { code, text } => {
                let spec = serde_json::json!({ "code": code, "text": text });
                rows.push(row("approval", spec.to_string()));
                continue;
            }
            Outbound::Decided { code, text } => {
                let spec = serde_json::json!({ "code": code, "text": text });
                rows.push(row("decided", spec.to_string()));
                continue;
            }
            Outbound::Reply(text) => (style.reply, text),
            Outbound::Failed(reason) => (style.notice, format!("⚠️ {reason}")),
            Outbound::Cancelled => (style.notice, "Stopped.".to_string()),
            Outbound::Notice(text) => (style.notice, text),
            Outbound::Progress(text) | Outbound::Status { text, .. } => ("progress", text),
        };
        for piece in (style.split)(&text) {
            rows.push(row(kind, piece));
        }
    }
    Ok(rows)
}

/// Keeps a file to send under the files directory until its row is delivered.
fn keep_outgoing(
    files_dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<std::path::PathBuf, ChannelError> {
    let dir = files_dir.join("outgoing");
    let path = dir.join(format!("{}-{name}", hex::encode(rand::random::<[u8; 8]>())));
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, bytes))
        .map_err(|e| ChannelError::Send(format!("cannot keep {name} for sending: {e}")))?;
    Ok(path)
}

/// Queues rows: with receipts, settles the answered messages in the same transaction, and
/// with `live`, forgets that chat's growing reply (which the rows replace or delete).
pub async fn queue(
    store: &Store,
    channel: &str,
    rows: &[NewOutbox],
    receipts: &[Receipt],
    live: Option<&ChatRef>,
    wake: &Notify,
) -> Result<(), ChannelError> {
    if receipts.is_empty() && rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = receipts.iter().map(|r| r.0).collect();
    let live = live.map(|c| (c.chat_id.as_str(), c.thread_id.as_str()));
    let stored = store.settle(channel, &ids, rows, live).await;
    stored.map_err(|e| ChannelError::Send(format!("cannot queue the message: {e}")))?;
    wake.notify_one();
    Ok(())
}

/// Fetches a message's files into `files_dir/incoming`. Before this, an attachment's `problem`
/// holds `<tag>:<platform reference>`; `download(reference, path)` saves one file. A file over
/// the size limit, or one that fails, gets its reason in `problem` instead of a `local` path.
pub async fn fetch_files<F, Fut>(
    attachments: &mut [Attachment],
    tag: &str,
    files_dir: &Path,
    message_id: i64,
    download: F,
) where
    F: Fn(String, std::path::PathBuf) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let prefix = format!("{tag}:");
    for (i, a) in attachments.iter_mut().enumerate() {
        let Some(reference) = a
            .problem
            .take()
            .and_then(|p| p.strip_prefix(prefix.as_str()).map(str::to_string))
        else {
            continue;
        };
        if a.size > MAX_FILE_BYTES as u64 {
            a.problem = Some(format!(
                "{} is {} MB; the limit is 20 MB",
                a.name,
                a.size / 1_000_000
            ));
            continue;
        }
        let dir = files_dir.join("incoming");
        let path = dir.join(format!("{message_id}-{i}-{}", safe_name(&a.name)));
        let result = match tokio::fs::create_dir_all(&dir).await {
            Ok(()) => download(reference, path.clone()).await,
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => a.local = Some(path),
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                a.problem = Some(format!("{} could not be downloaded: {e}", a.name));
            }
        }
    }
}

/// The ending of a turn whose reply was shown while it was written: with a message in place,
/// the first reply row becomes a `replace` of it (the message becomes the answer), or, when the
/// turn ended without a reply row (failed, cancelled), the message is deleted first. A draft
/// needs nothing. Returns whether a message was in place.
pub fn replace_live(
    rows: &mut Vec<NewOutbox>,
    chat: &ChatRef,
    shown: Option<Shown>,
    reply: &str,
) -> bool {
    let Some(Shown::Message(id)) = shown else {
        return false;
    };
    match rows.iter_mut().find(|r| r.kind == reply) {
        Some(row) => {
            row.kind = "replace";
            row.text = serde_json::json!({ "message": id, "text": row.text }).to_string();
        }
        None => rows.insert(
            0,
            NewOutbox {
                chat_id: chat.chat_id.clone(),
                thread_id: chat.thread_id.clone(),
                kind: "delete",
                text: id,
            },
        ),
    }
    true
}

/// The answer to a button press is a short notice to the presser, not a message in the chat:
/// takes the notice rows (`is_notice`) out of `rows` and returns their text, or, when the
/// router answered nothing (a stranger's press), a refusal.
pub fn press_answer(rows: &mut Vec<NewOutbox>, is_notice: impl Fn(&NewOutbox) -> bool) -> String {
    let mut said = Vec::new();
    rows.retain(|row| {
        let notice = is_notice(row);
        if notice {
            said.push(row.text.clone());
        }
        !notice
    });
    if said.is_empty() {
        "Only an owner can decide this.".to_string()
    } else {
        said.join("\n")
    }
}

/// Whether these parts end what the chat was waiting for (typing stops).
pub fn ends_wait(parts: &[Outbound]) -> bool {
    parts
        .iter()
        .any(|p| p.ends_turn() || matches!(p, Outbound::Notice(_)))
}

/// "Typing…" per chat, renewed until the chat is answered.
#[derive(Default)]
pub struct Typing {
    chats: Mutex<HashMap<ChatRef, CancellationToken>>,
}

impl Typing {
    /// Starts showing typing in `chat`: `signal` is sent after [`TYPING_AFTER`] and then every
    /// `every`, until [`Typing::stop`] or a few minutes pass.
    pub fn start<F, Fut>(&self, chat: &ChatRef, every: Duration, signal: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let token = CancellationToken::new();
        if let Some(old) = self
            .chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chat.clone(), token.clone())
        {
            old.cancel();
        }
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + TYPING_FOR_AT_MOST;
            tokio::select! {
                () = tokio::time::sleep(TYPING_AFTER) => {}
                () = token.cancelled() => return,
            }
            while tokio::time::Instant::now() < until {
                tokio::select! {
                    () = signal() => {}
                    () = token.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = token.cancelled() => return,
                }
            }
        });
    }

    pub fn stop(&self, chat: &ChatRef) {
        if let Some(token) = self
            .chats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(chat)
        {
            token.cancel();
        }
    }
}
