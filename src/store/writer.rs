//! Group commit: the writes of a turn's hot path (messages, usage, answers, received updates,
//! delivered rows) are queued to one task, which runs whatever is waiting in one transaction
//! and tells each caller only once that transaction is durable. Under load many chats' writes
//! share one commit (one fsync); alone, a write costs what it did before.
//!
//! A batch runs on the write connection's raw handle, locked once for the batch (`raw.rs`) and
//! kept for up to eight batches that follow back to back: one round trip to sqlx's connection
//! thread per run of batches instead of two per statement. The task blocks its thread for the
//! batch (its statements and the commit's fsync).
//!
//! A write may ask only to be visible (`write_visible`): a batch of only such writes commits
//! without its fsync. Such a commit is synced within [`LAZY_FOR`] all the same: by the next
//! synced commit, or, when none comes, by an fsync of the WAL file of the writer's own, so a
//! power loss can take only the writes of the last moments.
//!
//! A batch in which any write fails is rolled back whole and its writes are run again one by
//! one, each in its own transaction, so each caller gets its own result and one bad write never
//! takes another caller's with it. Writes are plain functions of their data, so running one
//! again is running it afresh.

use std::future::Future;
use std::path::PathBuf;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::checkpoint::WalCommits;
use super::raw::Db;
use super::{Result, StoreError};

/// Most writes run in one transaction.
const BATCH: usize = 128;

/// Batches run back to back on one locked handle at most (see [`run_batches`]).
const HOLD: usize = 8;

/// How long writes nobody waits for (activity entries, usage records) wait for a write that
/// someone does wait for, to share its commit instead of making one of their own.
const LAZY_FOR: std::time::Duration = std::time::Duration::from_millis(50);

/// A write: a plain function of its data and the connection (inside a transaction, or alone).
pub type WriteFn<D, T> = fn(&D, &mut Db) -> Result<T>;

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

/// What a write's caller is told it has once its result comes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// The write is on disk: its commit was synced.
    Durable,
    /// The write is committed and every reader sees it (see [`Writer::write_visible`]).
    Visible,
}

/// Where a write nobody waits for runs among the writes queued after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In its place: with the next write someone waits for, or before it (messages of a
    /// conversation, whose order is their ids'; received updates, which their poller awaits).
    Kept,
    /// Anywhere later: it may also wait past a batch committed without its fsync, for the next
    /// synced one (activity entries, usage records), until it is due.
    Any,
}

/// Whether a write waits for company, and until when.
#[derive(Clone, Copy)]
enum Wait {
    /// Someone waits for it: it runs in the next batch.
    No,
    /// Nobody waits for it right now: it may wait for company until `due`.
    Lazy { due: Instant, place: Place },
}

trait Job: Send {
    /// Runs the write; whether it succeeded (the result is kept for `finish`).
    fn run(&mut self, db: &mut Db) -> bool;
    fn alone(&self) -> Alone;
    fn wait(&self) -> Wait;
    /// Nobody waits for it right now: it may wait for company.
    fn lazy(&self) -> bool {
        matches!(self.wait(), Wait::Lazy { .. })
    }
    /// It may still wait for a synced commit at `now` (see [`Place::Any`]).
    fn waits_for_sync(&self, now: Instant) -> bool {
        matches!(self.wait(), Wait::Lazy { due, place: Place::Any } if now < due)
    }
    /// Its caller is told only once it is on disk (a commit with its fsync).
    fn durable(&self) -> bool;
    /// Hands the caller its result: the write's own, unless the commit failed.
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Typed<D, T> {
    data: D,
    write: WriteFn<D, T>,
    alone: Alone,
    wait: Wait,
    needs: Needs,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<D: Send + Sync, T: Send> Job for Typed<D, T> {
    fn run(&mut self, db: &mut Db) -> bool {
        let out = (self.write)(&self.data, db);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn alone(&self) -> Alone {
        self.alone
    }

    fn wait(&self) -> Wait {
        self.wait
    }

    fn durable(&self) -> bool {
        self.needs == Needs::Durable
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
    /// Starts the task on the pool of the database whose WAL file is `wal`, with the count of
    /// the pool's commits that wrote to it; it ends when every handle is gone.
    pub(super) fn spawn(pool: SqlitePool, wal: PathBuf, commits: WalCommits) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Box<dyn Job>>();
        tokio::spawn(async move {
            let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(BATCH);
            // Once every handle is gone, nothing waits for company any more.
            let mut closed = false;
            let mut unsynced = Unsynced::new(wal, commits);
            loop {
                // What a held run left (writes nobody waits for) goes first.
                if batch.is_empty() {
                    let first = match unsynced.deadline() {
                        None => rx.recv().await,
                        Some(deadline) => tokio::select! {
                            job = rx.recv() => job,
                            () = tokio::time::sleep_until(deadline) => {
                                // No synced commit came: the WAL is synced on its own.
                                unsynced.sync().await;
                                continue;
                            }
                        },
                    };
                    match first {
                        Some(first) => batch.push(first),
                        None => break,
                    }
                }
                take_waiting(&mut rx, &mut batch);
                if batch.iter().all(|job| job.lazy()) {
                    // Nobody waits for these: let a write someone waits for join them, until
                    // the first of them is due (or an unsynced commit must be synced).
                    let mut first_due = due(&batch);
                    if let Some(deadline) = unsynced.deadline() {
                        first_due = first_due.min(deadline);
                    }
                    let until = tokio::time::sleep_until(first_due);
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
                                None => {
                                    closed = true;
                                    break;
                                }
                            },
                            () = &mut until => break,
                        }
                    }
                }
                run_batches(&pool, &mut rx, &mut batch, closed, &mut unsynced).await;
            }
            if unsynced.deadline().is_some() {
                unsynced.sync().await;
            }
        });
        Self { queue }
    }

    /// Queues `write` with `data` for a coming batch without waiting for it: for writes nobody
    /// reads back at once, which a later awaited write (queued after it) makes durable too
    /// (for [`Place::Any`], a later awaited write whose commit is synced). A failure is logged.
    pub(super) fn queue<D, T>(&self, place: Place, alone: Alone, data: D, write: WriteFn<D, T>)
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        if let Err(e) = self.enqueue(alone, lazy(place), Needs::Durable, data, write) {
            tracing::error!("{e}; a write was lost");
        }
    }

    /// Runs `write` with `data` in the next batch; returns once its batch is committed.
    pub(super) async fn write<D, T>(&self, alone: Alone, data: D, write: WriteFn<D, T>) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(alone, Wait::No, Needs::Durable, data, write)
            .await
    }

    /// Like [`Writer::write`], but returns once its batch is committed and visible, not
    /// necessarily synced to disk: when no write in the batch needs it, the commit skips its
    /// fsync (`synchronous=NORMAL` for that transaction). For writes whose loss in a power
    /// failure loses nothing anyone was told: the next synced commit makes them durable with
    /// it (the WAL is synced whole), and until then nothing outside depends on them. A crash
    /// of the process alone loses nothing either way (the write is in the kernel's cache).
    pub(super) async fn write_visible<D, T>(
        &self,
        alone: Alone,
        data: D,
        write: WriteFn<D, T>,
    ) -> Result<T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(alone, Wait::No, Needs::Visible, data, write)
            .await
    }

    /// Queues `write` now; it may wait a little (up to 50 ms) for a write someone waits for, to
    /// share its commit. The returned future gives its result once committed (dropping it does
    /// not take the write back).
    pub(super) fn submit_lazily<D, T>(
        &self,
        place: Place,
        alone: Alone,
        data: D,
        write: WriteFn<D, T>,
    ) -> impl Future<Output = Result<T>> + use<D, T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        self.submit(alone, lazy(place), Needs::Durable, data, write)
    }

    /// Queues an empty write nobody waits for, due at `due`, of the place of the feed's batches.
    #[cfg(test)]
    pub(super) fn queue_nothing_until(&self, due: Instant) -> impl Future<Output = Result<()>> {
        let wait = Wait::Lazy {
            due,
            place: Place::Any,
        };
        self.submit(Alone::OneStatement, wait, Needs::Durable, (), nothing)
    }

    fn submit<D, T>(
        &self,
        alone: Alone,
        wait: Wait,
        needs: Needs,
        data: D,
        write: WriteFn<D, T>,
    ) -> impl Future<Output = Result<T>> + use<D, T>
    where
        D: Send + Sync + 'static,
        T: Send + 'static,
    {
        let answer = self.enqueue(alone, wait, needs, data, write);
        async move { answer?.await.map_err(|_| stopped())? }
    }

    /// Puts the write on the queue; its result comes on the returned receiver.
    fn enqueue<D, T>(
        &self,
        alone: Alone,
        wait: Wait,
        needs: Needs,
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
            wait,
            needs,
            out: None,
            reply,
        });
        self.queue.send(job).map_err(|_| stopped())?;
        Ok(answer)
    }
}

/// A write nobody waits for right now, due [`LAZY_FOR`] from now.
fn lazy(place: Place) -> Wait {
    Wait::Lazy {
        due: Instant::now() + LAZY_FOR,
        place,
    }
}

fn stopped() -> StoreError {
    StoreError::Conflict("the database writer has stopped".into())
}

/// When the first of the batch's writes that nobody waits for is due (soon, if none is).
fn due(batch: &[Box<dyn Job>]) -> Instant {
    batch
        .iter()
        .filter_map(|job| match job.wait() {
            Wait::Lazy { due, .. } => Some(due),
            Wait::No => None,
        })
        .min()
        .unwrap_or_else(Instant::now)
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

    /// Has the writes queued so far committed, synced, without waiting for company (someone
    /// now waits for a write queued lazily), and returns at once.
    pub(super) fn hurry(&self) {
        if let Err(e) = self.enqueue(Alone::OneStatement, Wait::No, Needs::Durable, (), nothing) {
            tracing::error!("cannot hurry the queued writes: {e}");
        }
    }
}

fn nothing(_: &(), _: &mut Db) -> Result<()> {
    Ok(())
}

/// Runs the batch; then, while writes someone waits for keep arriving, the next batches on the
/// same locked handle, up to [`HOLD`] in all: locking and handing the connection back (three
/// round trips to sqlx's thread) are paid once for them, and a write through sqlx waits for
/// the connection at most that long. A batch of writes nobody waits for is left in `batch`,
/// and so are writes of [`Place::Any`] that are not due when their batch is not synced, unless
/// every handle is gone (`closed`). A batch is synced when a write in it needs it, or when
/// commits that skipped their fsync are due to be synced (`unsynced`).
async fn run_batches(
    pool: &SqlitePool,
    rx: &mut mpsc::UnboundedReceiver<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
    closed: bool,
    unsynced: &mut Unsynced,
) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail(batch, &e),
    };
    let mut handle = match conn.lock_handle().await {
        Ok(handle) => handle,
        Err(e) => return fail(batch, &e),
    };
    // SAFETY: the handle stays locked until `db` (and every statement on it) is gone.
    let mut db = unsafe { Db::new(handle.as_raw_handle()) };
    let mut synced = Synced::Full;
    let mut held = Vec::new();
    for _ in 0..HOLD {
        let now = Instant::now();
        let durable = unsynced.overdue(now)
            || batch
                .iter()
                .any(|job| job.durable() && (closed || !job.waits_for_sync(now)));
        if !durable {
            // Unsynced: what may wait for a synced commit waits, in its order, first in line.
            held.extend(batch.extract_if(.., |job| job.waits_for_sync(now)));
        }
        synced = synced.set(&mut db, durable);
        // As the connection is set: when the pragma could not be changed, as it was.
        unsynced.track(synced == Synced::Full, now, || run_batch(&mut db, batch));
        batch.append(&mut held);
        take_waiting(rx, batch);
        if batch.iter().all(|job| job.lazy()) {
            break;
        }
    }
    // The connection goes back as it was opened: every commit synced.
    synced.set(&mut db, true);
}

/// Whether the connection's commits are synced (`synchronous`), changed only when a batch
/// needs it changed; the pragma is a setting of the connection, no I/O.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Synced {
    Full,
    Normal,
}

impl Synced {
    fn set(self, db: &mut Db, durable: bool) -> Self {
        let want = if durable {
            Synced::Full
        } else {
            Synced::Normal
        };
        if want == self {
            return self;
        }
        let pragma = match want {
            Synced::Full => c"PRAGMA synchronous = FULL",
            Synced::Normal => c"PRAGMA synchronous = NORMAL",
        };
        match db.exec(pragma) {
            Ok(()) => want,
            Err(e) => {
                // Unchanged: every commit stays as synced as it was.
                tracing::error!("cannot set how commits are synced: {e}");
                self
            }
        }
    }
}

fn run_batch(db: &mut Db, batch: &mut Vec<Box<dyn Job>>) {
    if batch.is_empty() {
        return;
    }
    if batch.len() == 1 {
        if let Some(job) = batch.pop() {
            run_alone(db, job);
        }
        return;
    }
    match run_together(db, batch) {
        Ok(true) => {
            for job in batch.drain(..) {
                job.finish(Ok(()));
            }
        }
        // A write failed, or the transaction did: each runs again on its own.
        Ok(false) | Err(_) => {
            for job in batch.drain(..) {
                run_alone(db, job);
            }
        }
    }
}

/// Every write of the batch fails with the connection's error.
fn fail(batch: &mut Vec<Box<dyn Job>>, e: &sqlx::Error) {
    for job in batch.drain(..) {
        job.finish(Err(StoreError::Sqlite(e.to_string())));
    }
}

/// Runs every write in one transaction; commits only when all succeeded.
fn run_together(db: &mut Db, batch: &mut [Box<dyn Job>]) -> Result<bool> {
    db.exec(c"BEGIN")?;
    for job in batch.iter_mut() {
        if !job.run(db) {
            rollback(db);
            return Ok(false);
        }
    }
    commit(db)?;
    Ok(true)
}

fn run_alone(db: &mut Db, mut job: Box<dyn Job>) {
    let committed = (|| {
        if job.alone() == Alone::OneStatement {
            job.run(db);
            return Ok(());
        }
        db.exec(c"BEGIN")?;
        if job.run(db) {
            commit(db)
        } else {
            // The caller gets its write's error.
            rollback(db);
            Ok(())
        }
    })();
    job.finish(committed);
}

/// Commits; a commit that fails leaves no transaction open behind it.
fn commit(db: &mut Db) -> Result<()> {
    let committed = db.exec(c"COMMIT");
    if committed.is_err() {
        rollback(db);
    }
    committed
}

fn rollback(db: &mut Db) {
    if db.in_transaction()
        && let Err(e) = db.exec(c"ROLLBACK")
    {
        tracing::error!("cannot roll a batch of writes back: {e}");
    }
}

mod unsynced;
use unsynced::Unsynced;

#[cfg(test)]
mod tests;
