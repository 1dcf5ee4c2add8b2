//! The append-only activity feed: every message, tool call, change and error.
//!
//! Entries are gathered by one background task and written in batches through the group writer
//! (sharing a commit with the turns' own writes), so recording never puts a database round trip
//! (or an fsync) on a turn's path. Reads and `Store::close` flush the queue first,
//! so a reader always sees what was recorded before it asked.

use std::collections::VecDeque;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::raw::{Db, Value};
use super::writer::{Alone, Place, Writer};
use super::{Result, Store};
use crate::domain::{ActorRole, Millis, now_millis};
use crate::secrets::Redactor;

/// One entry about to be written.
#[derive(Debug, Clone, Default)]
pub struct NewActivity {
    /// What happened, dotted: `message.in`, `tool.call`, `agent.create`, `llm.error`, ...
    pub kind: String,
    /// Who caused it: a caller label, an agent, or `system`.
    pub actor: String,
    /// The actor's role; `None` means the agent when the actor is the agent, else the system.
    pub role: Option<ActorRole>,
    pub agent: Option<String>,
    /// The instance the entry is about, when there is one.
    pub instance: Option<String>,
    pub conversation_id: Option<i64>,
    /// One line for people.
    pub summary: String,
    /// Structured detail for machines.
    pub detail: Option<serde_json::Value>,
}

impl NewActivity {
    fn role(&self) -> ActorRole {
        self.role.unwrap_or(match &self.agent {
            Some(agent) if *agent == self.actor => ActorRole::Agent,
            _ => ActorRole::System,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityEntry {
    pub id: i64,
    pub at: Millis,
    pub kind: String,
    pub actor: String,
    /// `owner`, `user`, `agent` or `system`.
    pub role: String,
    pub agent: Option<String>,
    pub instance: Option<String>,
    pub conversation_id: Option<i64>,
    pub summary: String,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ActivityFilter {
    /// Only kinds starting with this prefix (`tool.` matches `tool.call` and `tool.result`).
    pub kind_prefix: Option<String>,
    pub agent: Option<String>,
    pub role: Option<ActorRole>,
    /// Entries about this instance, and entries of the agent that lives in it.
    pub instance: Option<String>,
    pub since: Option<Millis>,
    /// Only entries written after the one with this id.
    pub after_id: Option<i64>,
    pub limit: u32,
}

fn entry_from_row(row: &SqliteRow) -> Result<ActivityEntry> {
    let detail: Option<String> = row.try_get("detail")?;
    Ok(ActivityEntry {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        agent: row.try_get("agent")?,
        instance: row.try_get("instance")?,
        conversation_id: row.try_get("conversation_id")?,
        summary: row.try_get("summary")?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// What the writer task is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    Write(NewActivity, Millis),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// Largest batch written in one transaction.
const BATCH: usize = 256;

/// Entries kept for live views that fall behind (a slower one is told how many it missed).
const LIVE_BUFFER: usize = 256;

/// Where written entries are announced, for live views.
pub(super) fn live_channel() -> broadcast::Sender<ActivityEntry> {
    broadcast::channel(LIVE_BUFFER).0
}

/// Starts the task that gathers entries; it ends when every sender is gone. Each batch is
/// written through the group writer (so it shares a commit with whatever else is waiting), and
/// each written entry is announced on `live` once it is in the database.
pub(super) fn spawn_writer(
    writer: Writer,
    live: broadcast::Sender<ActivityEntry>,
) -> mpsc::UnboundedSender<Command> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        let mut waiters = Vec::new();
        // Commands that came while a batch was being written, taken before the channel's.
        let mut carried = VecDeque::new();
        loop {
            let first = match carried.pop_front() {
                Some(first) => first,
                None => match rx.recv().await {
                    Some(first) => first,
                    None => break,
                },
            };
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Write(entry, at) => batch.push((entry, at)),
                    Command::Flush(waiter) => waiters.push(waiter),
                }
                if batch.len() < BATCH {
                    next = carried.pop_front().or_else(|| rx.try_recv().ok());
                }
            }
            if !batch.is_empty() {
                // Entries are built for live views only while one listens; one that starts
                // listening meanwhile reads them from the database (it flushes first).
                let announce = live.receiver_count() > 0;
                let entries = std::mem::take(&mut batch);
                let count = entries.len();
                // A reader waiting to see them (a flush) has them written now; otherwise they
                // wait a little to share a commit with the turns' own writes.
                let data = (entries, announce);
                let written = if waiters.is_empty() {
                    let lazily =
                        writer.submit_lazily(Place::Any, Alone::Transaction, data, write_batch);
                    wait_for(lazily, &writer, &mut rx, &mut carried).await
                } else {
                    writer.write(Alone::Transaction, data, write_batch).await
                };
                match written {
                    Ok(written) => {
                        for entry in written {
                            // Nobody listening is fine.
                            let _ = live.send(entry);
                        }
                    }
                    Err(e) => {
                        tracing::error!(entries = count, "cannot write the activity feed: {e}")
                    }
                }
            }
            for waiter in waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    });
    tx
}

/// Waits for a batch written lazily, keeping the commands that come meanwhile for the next
/// round; a flush among them hurries the batch (a reader waits for it), which otherwise may
/// wait up to 50 ms for a synced commit to share.
async fn wait_for<T>(
    lazily: impl Future<Output = T>,
    writer: &Writer,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    carried: &mut VecDeque<Command>,
) -> T {
    tokio::pin!(lazily);
    let mut listening = true;
    loop {
        tokio::select! {
            written = &mut lazily => return written,
            command = rx.recv(), if listening => match command {
                Some(command) => {
                    if matches!(command, Command::Flush(_)) {
                        writer.hurry();
                        listening = false;
                    }
                    carried.push_back(command);
                }
                None => listening = false,
            },
        }
    }
}

/// The feed's INSERT for each number of rows one statement takes (largest first), built once.
static INSERTS: std::sync::LazyLock<[(usize, String); 4]> = std::sync::LazyLock::new(|| {
    [64, 16, 4, 1].map(|size| {
        let places: Vec<String> = (0..size)
            .map(|i| {
                let columns: Vec<String> = (1..=9).map(|c| format!("?{}", i * 9 + c)).collect();
                format!("({})", columns.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO activity (at, kind, actor, role, agent, instance, conversation_id, \
             summary, detail) VALUES {}",
            places.join(", ")
        );
        (size, sql)
    })
});

/// Writes the batch; with `announce`, returns the entries as stored (ids, redacted text) for
/// live views.
fn write_batch(
    (batch, announce): &(Vec<(NewActivity, Millis)>, bool),
    db: &mut Db,
) -> Result<Vec<ActivityEntry>> {
    // Secret values never reach the feed on disk.
    let redactor = Redactor::global();
    // Each entry as stored, with its detail as the text stored.
    let rows: Vec<(ActivityEntry, Option<String>)> = batch
        .iter()
        .map(|(entry, at)| {
            let stored = ActivityEntry {
                id: 0,
                at: *at,
                kind: entry.kind.clone(),
                actor: entry.actor.clone(),
                role: entry.role().as_str().to_string(),
                agent: entry.agent.clone(),
                instance: entry.instance.clone(),
                conversation_id: entry.conversation_id,
                summary: redactor.redact(&entry.summary).into_owned(),
                detail: None,
            };
            let detail = entry
                .detail
                .as_ref()
                .map(|d| redactor.redact(&d.to_string()).into_owned());
            (stored, detail)
        })
        .collect();
    let mut written = Vec::with_capacity(if *announce { rows.len() } else { 0 });
    // Several rows per statement, in chunks of a few fixed sizes so the statements stay few
    // and cached.
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let (size, sql) = INSERTS
            .iter()
            .find(|(n, _)| *n <= rest.len())
            .unwrap_or(&INSERTS[INSERTS.len() - 1]);
        let (chunk, after) = rest.split_at(*size);
        rest = after;
        let mut params: Vec<Value<'_>> = Vec::with_capacity(chunk.len() * 9);
        for (row, detail) in chunk {
            params.extend::<[Value<'_>; 9]>([
                row.at.into(),
                (&row.kind).into(),
                (&row.actor).into(),
                (&row.role).into(),
                (&row.agent).into(),
                (&row.instance).into(),
                row.conversation_id.into(),
                (&row.summary).into(),
                detail.into(),
            ]);
        }
        db.execute(sql.as_str(), &params)?;
        if !*announce {
            continue;
        }
        // A rowid table numbers the rows of one statement one after another.
        let first = db.last_insert_rowid() - chunk.len() as i64 + 1;
        for (i, (row, detail)) in chunk.iter().enumerate() {
            let mut entry = row.clone();
            entry.id = first + i as i64;
            entry.detail = detail.as_deref().and_then(|d| serde_json::from_str(d).ok());
            written.push(entry);
        }
    }
    Ok(written)
}

impl Store {
    /// Queues an entry for the feed. Never waits on the database.
    pub fn record(&self, entry: NewActivity) {
        if self
            .activity
            .send(Command::Write(entry, now_millis()))
            .is_err()
        {
            tracing::error!("the activity writer has stopped; an entry was lost");
        }
    }

    /// Waits until every entry recorded so far is in the database.
    pub async fn flush_activity(&self) {
        let (done, wait) = oneshot::channel();
        if self.activity.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The newest entries matching the filter, newest first.
    pub async fn activity(&self, filter: &ActivityFilter) -> Result<Vec<ActivityEntry>> {
        self.flush_activity().await;
        let limit = i64::from(filter.limit.clamp(1, 1000));
        let prefix = filter
            .kind_prefix
            .as_deref()
            .map(|p| format!("{}%", p.replace('%', "")));
        let rows = sqlx::query(
            "SELECT * FROM activity \
             WHERE ($1 IS NULL OR kind LIKE $1) AND ($2 IS NULL OR agent = $2) AND ($3 IS NULL OR at >= $3) \
             AND ($5 IS NULL OR role = $5) AND ($7 IS NULL OR id > $7) \
             AND ($6 IS NULL OR instance = $6 OR agent IN \
                  (SELECT agent FROM instances WHERE name = $6 AND agent IS NOT NULL)) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(prefix)
        .bind(&filter.agent)
        .bind(filter.since)
        .bind(limit)
        .bind(filter.role.map(ActorRole::as_str))
        .bind(&filter.instance)
        .bind(filter.after_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Entries as they are written, for live views. A receiver that falls more than
    /// 256 entries behind is told how many it missed.
    pub fn activity_live(&self) -> broadcast::Receiver<ActivityEntry> {
        self.live.subscribe()
    }
}

impl ActivityFilter {
    /// Whether an entry passes the filter; `instance_agent` is the agent living in the
    /// filter's instance, if any.
    pub fn matches(&self, entry: &ActivityEntry, instance_agent: Option<&str>) -> bool {
        let kind = self
            .kind_prefix
            .as_deref()
            .is_none_or(|p| entry.kind.starts_with(p));
        let agent = self
            .agent
            .as_deref()
            .is_none_or(|a| entry.agent.as_deref() == Some(a));
        let role = self.role.is_none_or(|r| entry.role == r.as_str());
        let instance = self.instance.as_deref().is_none_or(|i| {
            entry.instance.as_deref() == Some(i)
                || (instance_agent.is_some() && entry.agent.as_deref() == instance_agent)
        });
        let since = self.since.is_none_or(|s| entry.at >= s);
        let after = self.after_id.is_none_or(|id| entry.id > id);
        kind && agent && role && instance && since && after
    }
}

impl Store {
    /// How many entries of each kind the feed holds (flushed first), for metrics.
    pub async fn activity_counts(&self) -> Result<Vec<(String, i64)>> {
        self.flush_activity().await;
        let rows = sqlx::query(
            "SELECT CASE WHEN kind LIKE 'op.%' AND agent IS NOT NULL THEN 'tool.call' ELSE kind END AS k, \
             COUNT(*) AS n FROM activity GROUP BY k",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("n")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{ActivityFilter, Command, NewActivity};
    use crate::store::Store;

    /// A flush that comes while the feed's batch waits for company hurries the batch, and is
    /// kept for the next round.
    #[tokio::test]
    async fn a_flush_hurries_a_batch_waiting_for_company() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let due = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let batch = store.writer.queue_nothing_until(due);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (flush, _flushed) = tokio::sync::oneshot::channel();
        tx.send(Command::Flush(flush)).unwrap();
        let mut carried = std::collections::VecDeque::new();
        let waited = super::wait_for(batch, &store.writer, &mut rx, &mut carried);
        tokio::time::timeout(std::time::Duration::from_secs(20), waited)
            .await
            .expect("the batch waited for its due time with a reader waiting")
            .unwrap();
        assert!(matches!(carried.pop_front(), Some(Command::Flush(_))));
        store.close().await;
    }

    /// Entries written several to a statement are announced with the ids and details stored.
    #[tokio::test]
    async fn announced_entries_match_the_stored_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let mut live = store.activity_live();
        for i in 0..87 {
            store.record(NewActivity {
                kind: "test.entry".into(),
                actor: "system".into(),
                summary: format!("entry {i}"),
                detail: (i % 2 == 0).then(|| serde_json::json!({ "n": i })),
                ..NewActivity::default()
            });
        }
        let stored = store
            .activity(&ActivityFilter {
                limit: 1000,
                ..ActivityFilter::default()
            })
            .await
            .unwrap();
        let mut announced = Vec::new();
        while announced.len() < 87 {
            let entry = tokio::time::timeout(std::time::Duration::from_secs(10), live.recv())
                .await
                .expect("announced in time")
                .unwrap();
            announced.push(entry);
        }
        let mut stored: Vec<_> = stored.into_iter().collect();
        stored.reverse();
        assert_eq!(announced, stored);
        assert_eq!(announced[86].summary, "entry 86");
        assert_eq!(announced[4].detail, Some(serde_json::json!({ "n": 4 })));
        store.close().await;
    }
}
