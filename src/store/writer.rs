//! Group commit: the writes of a turn's hot path (messages, usage, answers, received updates,
//! delivered rows) are queued to one task, which runs whatever is waiting in one transaction
//! and tells each caller only once that transaction is durable. Under load many chats' writes
//! share one commit (one fsync); alone, a write costs what it did before.
//!
//! A batch in which any write fails is rolled back whole and its writes are run again one by
//! one, each in its own transaction, so each caller gets its own result and one bad write never
//! takes another caller's with it. Writes are plain functions of their data, so running one
//! again is running it afresh.

use std::future::Future;
use std::pin::Pin;

use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{Result, StoreError};

/// Most writes run in one transaction.
const BATCH: usize = 128;

/// How long writes nobody waits for (activity entries, usage records) wait for a write that
/// someone does wait for, to share its commit instead of making one of their own.
const LAZY_FOR: std::time::Duration = std::time::Duration::from_millis(50);

pub type WriteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A write: a plain function of its data and the connection (inside a transaction, or alone).
pub type WriteFn<D, T> = for<'a> fn(&'a D, &'a mut SqliteConnection) -> WriteFuture<'a, T>;

/// How a write runs when no other write is waiting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Alone {
    /// One statement: needs no transaction of its own.
    OneStatement,
    /// Several statements that must land together.
    Transaction,
}

impl Alone {
    /// For a write of this many statements.
    pub fn statements(n: usize) -> Self {
        if n > 1 {
            Alone::Transaction
        } else {
            Alone::OneStatement
        }
    }
}

trait Job: Send {
    /// Runs the write; whether it succeeded (the result is kept for `finish`).
    fn run<'a>(&'a mut self, conn: &'a mut SqliteConnection) -> WriteFuture<'a, bool>;
    fn alone(&self) -> Alone;
    /// Nobody waits for it right now: it may wait for company.
    fn lazy(&self) -> bool;
    /// Hands the caller its result: the write's own, unless the commit failed.
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Typed<D, T> {
    data: D,
    write: WriteFn<D, T>,
    alone: Alone,
    lazy: bool,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<D: Send + Sync, T: Send> Job for Typed<D, T> {
    fn run<'a>(&'a mut self, conn: &'a mut SqliteConnection) -> WriteFuture<'a, bool> {
        Box::pin(async move {
            let out = (self.write)(&self.data, conn).await;
            let ok = out.is_ok();
            self.out = Some(out);
            Ok(ok)
        })
    }

    fn alone(&self) -> Alone {
        self.alone
    }

    fn lazy(&self) -> bool {
        self.lazy
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let out = match committed {
            Ok(()) => self
                .out
                .unwrap_or_else(|| Err(StoreError::Conflict("the write did not run".into()))),
            Err(e) => Err(e),
        };
        // A caller that stopped waiting (or never waited) does not undo its write.
        if let Err(Err(e)) = self.reply.send(out) {
            tracing::error!("a queued database write failed: {e}");
        }
    }
}

/// The handle writes are queued on.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the task; it ends when every handle is gone.
    pub(super) fn spawn(pool: SqlitePool) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Box<dyn Job>>();
        tokio::spawn(async move {
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                take_waiting(&mut rx, &mut batch);
                if batch.iter().all(|job| job.lazy()) {
                    // Nobody waits for these: let a write someone waits for join them.
                    let until = tokio::time::sleep(LAZY_FOR);
                    tokio::pin!(until);
                    while batch.len() < BATCH {
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some(job) => {
                                    let eager = !job.lazy();
                                    batch.push(job);
                                    if eager {
                                        take_waiting(&mut rx, &mut batch);
                                        break;
                                    }
                                }
                                None => break,
                            },
                            () = &mut until => break,
                        }
                    }
                }
                run_batch(&pool, &mut batch).await;
            }
        });
        Self { queue }
    }

    /// Queues `write` with `data` for a coming batch without waiting for it: for writes nobody
    /// reads back at once, which a later awaited write (queued after it) makes durable too.
    /// A failure is logged.
    pub(super) fn queue<D, T>(&self, alone: Alone, data: D, write: WriteFn<D, T>)
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        if let Err(e) = self.enqueue(alone, true, data, write) {
            tracing::error!("{e}; a write was lost");
        }
    }

    /// Runs `write` with `data` in the next batch; returns once its batch is committed.
    pub(super) async fn write<D, T>(&self, alone: Alone, data: D, write: WriteFn<D, T>) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(alone, false, data, write).await
    }

    /// Queues `write` now; it may wait a little (up to 50 ms) for a write someone waits for, to
    /// share its commit. The returned future gives its result once committed (dropping it does
    /// not take the write back).
    pub(super) fn submit_lazily<D, T>(
        &self,
        alone: Alone,
        data: D,
        write: WriteFn<D, T>,
    ) -> impl Future<Output = Result<T>> + use<D, T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(alone, true, data, write)
    }

    fn submit<D, T>(
        &self,
        alone: Alone,
        lazy: bool,
        data: D,
        write: WriteFn<D, T>,
    ) -> impl Future<Output = Result<T>> + use<D, T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        let answer = self.enqueue(alone, lazy, data, write);
        async move { answer?.await.map_err(|_| stopped())? }
    }

    /// Puts the write on the queue; its result comes on the returned receiver.
    fn enqueue<D, T>(
        &self,
        alone: Alone,
        lazy: bool,
        data: D,
        write: WriteFn<D, T>,
    ) -> Result<oneshot::Receiver<Result<T>>>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Typed {
            data,
            write,
            alone,
            lazy,
            out: None,
            reply,
        });
        self.queue.send(job).map_err(|_| stopped())?;
        Ok(answer)
    }
}

fn stopped() -> StoreError {
    StoreError::Conflict("the database writer has stopped".into())
}

/// Adds whatever else is queued, up to a batch.
fn take_waiting(rx: &mut mpsc::UnboundedReceiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

impl Writer {
    /// Returns once every write queued before it is committed.
    pub(super) async fn flush(&self) {
        let _ = self.write(Alone::OneStatement, (), nothing).await;
    }
}

fn nothing<'a>(_: &'a (), _: &'a mut SqliteConnection) -> WriteFuture<'a, ()> {
    Box::pin(async { Ok(()) })
}

async fn run_batch(pool: &SqlitePool, batch: &mut Vec<Box<dyn Job>>) {
    if batch.len() == 1 {
        if let Some(job) = batch.pop() {
            run_alone(pool, job).await;
        }
        return;
    }
    match run_together(pool, batch).await {
        Ok(true) => {
            for job in batch.drain(..) {
                job.finish(Ok(()));
            }
        }
        // A write failed, or the transaction did: each runs again on its own.
        Ok(false) | Err(_) => {
            for job in batch.drain(..) {
                run_alone(pool, job).await;
            }
        }
    }
}

/// Runs every write in one transaction; commits only when all succeeded.
async fn run_together(pool: &SqlitePool, batch: &mut [Box<dyn Job>]) -> Result<bool> {
    let mut tx = pool.begin().await?;
    for job in batch.iter_mut() {
        if !job.run(&mut tx).await? {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    tx.commit().await?;
    Ok(true)
}

async fn run_alone(pool: &SqlitePool, mut job: Box<dyn Job>) {
    let committed = async {
        if job.alone() == Alone::OneStatement {
            let mut conn = pool.acquire().await?;
            job.run(&mut conn).await?;
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        if job.run(&mut tx).await? {
            tx.commit().await?;
        }
        // A failed write's transaction rolls back as it is dropped; the caller gets its error.
        Ok(())
    }
    .await;
    job.finish(committed);
}

#[cfg(test)]
mod tests {
    use crate::domain::{ChatRef, Role};
    use crate::store::{NewMessage, Store};

    /// Writes queued together share a commit; one that fails (a message for a conversation that
    /// does not exist) gets its own error and takes no other write with it.
    #[tokio::test]
    async fn writes_share_a_commit_and_a_failing_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let chat = ChatRef {
            channel: "console".into(),
            chat_id: "1".into(),
            thread_id: String::new(),
        };
        let conversation = store.open_conversation(&chat, "operator").await.unwrap();
        let (_, commits_before) = crate::store::counters::totals();
        // On this single-threaded runtime every write is queued before the writer task runs.
        let writes = (0..40).map(|i| {
            let store = store.clone();
            let id = if i == 17 { 9_999_999 } else { conversation.id };
            async move {
                store
                    .append_message(id, Role::Assistant, &NewMessage::text(format!("m{i}")))
                    .await
            }
        });
        let results = futures_util::future::join_all(writes).await;
        let (_, commits_after) = crate::store::counters::totals();
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i != 17, "write {i}: {result:?}");
        }
        let stored = store.messages_after(conversation.id, 0).await.unwrap();
        let texts: Vec<&str> = stored.iter().map(|m| m.content.as_str()).collect();
        let expected: Vec<String> = (0..40)
            .filter(|i| *i != 17)
            .map(|i| format!("m{i}"))
            .collect();
        assert_eq!(texts, expected, "every good write landed, in order");
        // The batch was rolled back and its writes run one by one: 39 commits at most; without
        // the failing write they would have shared one (checked next).
        assert!(commits_after - commits_before <= 39);
        let (_, before) = crate::store::counters::totals();
        let writes = (0..40).map(|i| {
            let store = store.clone();
            async move {
                let text = NewMessage::text(format!("n{i}"));
                store
                    .append_message(conversation.id, Role::User, &text)
                    .await
            }
        });
        for result in futures_util::future::join_all(writes).await {
            result.unwrap();
        }
        let (_, after) = crate::store::counters::totals();
        assert!(
            after - before <= 2,
            "40 writes took {} commits",
            after - before
        );
        store.close().await;
    }
}
