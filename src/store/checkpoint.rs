//! WAL checkpoints mostly off the write path. SQLite copies the WAL back into the database
//! file (and syncs that file) in whichever commit finds the WAL over 1,000 pages, so one turn in
//! about sixty paid for copying a thousand pages: the turns' p99, and more on a large
//! database, where the pages lie further apart. Here the write connection's WAL hook (in place of
//! SQLite's automatic checkpoint) only wakes a task of the store's, which runs a passive
//! checkpoint on a connection of its own, on a blocking thread, while writes go on: once at
//! 1,000 pages and again at 1,500.
//!
//! The WAL starts over only when a write transaction begins with every frame copied back. A
//! writer that never pauses always has frames the background checkpoint had not seen, so the
//! hook still checkpoints in the writer's own commit once the WAL reaches twice the threshold:
//! by then the task has copied most of it, and what is left is at most about 500 pages. The WAL stays
//! bounded under any load (about 8 MiB).
//!
//! Closing the store stops the task before the last connection closes, which checkpoints
//! what is left (as SQLite always does).

use std::ffi::{c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libsqlite3_sys as ffi;
use sqlx::SqliteConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::raw::Conn;

/// The WAL size (in pages) that asks the task for a checkpoint: SQLite's own threshold.
const FRAMES: c_int = 1000;

/// The WAL size at which the writer's commit checkpoints itself (see the module's notes).
const FRAMES_MAX: c_int = 2 * FRAMES;

/// Past the threshold, the task runs a pass each time the WAL grows by this many pages (at 1,000
/// and 1,500): the writer's own checkpoint at 2,000 finds at most about 500 left to copy.
const STEP: c_int = FRAMES / 2;

/// The store's checkpoint task.
#[derive(Debug)]
pub(super) struct Checkpoints {
    wanted: Arc<Wanted>,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Checkpoints {
    /// Starts the task for the database at `path`; it checkpoints when a write connection set
    /// up with [`Checkpoints::install`] finds the WAL grown.
    pub(super) fn spawn(path: PathBuf) -> Self {
        let wanted = Arc::new(Wanted::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(path, wanted.clone(), stop.clone()));
        Self {
            wanted,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Replaces the connection's automatic checkpoint with a note to this task. The hook's
    /// context is a reference count of the task's signal that the connection keeps for its life
    /// (SQLite gives a hook no destructor: a few bytes per write connection ever opened).
    pub(super) async fn install(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let mut handle = conn.lock_handle().await?;
        let context = Arc::into_raw(self.wanted.clone()) as *mut c_void;
        // SAFETY: a live handle; the context stays valid for the process's life (never freed).
        unsafe {
            ffi::sqlite3_wal_hook(handle.as_raw_handle().as_ptr(), Some(on_commit), context);
        }
        Ok(())
    }

    /// Counts the write connection's commits that wrote to the WAL (others wrote nothing to
    /// sync).
    pub(super) fn commits(&self) -> WalCommits {
        WalCommits(self.wanted.clone())
    }

    /// Checkpoints the task has run.
    #[cfg(test)]
    fn runs(&self) -> u64 {
        self.wanted.runs.load(Ordering::Relaxed)
    }

    /// Stops the task, after the checkpoint it is running if any, and closes its connection.
    pub(super) async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Checkpoints {
    /// A store dropped without [`Store::close`](super::Store::close) (or never opened) leaves
    /// no task behind.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the hook and the task share.
#[derive(Debug, Default)]
struct Wanted {
    notify: Notify,
    /// The WAL's size at the last commit, in steps.
    step: AtomicI32,
    /// Checkpoints the task ran.
    runs: AtomicU64,
    /// Commits that wrote to the WAL.
    commits: AtomicU64,
}

/// The count of the write connection's commits that wrote to the WAL (see
/// [`Checkpoints::commits`]).
#[derive(Debug, Clone)]
pub(super) struct WalCommits(Arc<Wanted>);

impl WalCommits {
    pub(super) fn get(&self) -> u64 {
        self.0.commits.load(Ordering::Relaxed)
    }
}

/// SQLite's WAL hook: runs after each commit of the write connection, outside its locks.
unsafe extern "C" fn on_commit(
    context: *mut c_void,
    db: *mut ffi::sqlite3,
    schema: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: the context is the `Wanted` leaked in `install`, alive for the process.
    let wanted = unsafe { &*(context as *const Wanted) };
    wanted.commits.fetch_add(1, Ordering::Relaxed);
    if frames >= FRAMES_MAX {
        // What the task has not copied yet, copied here so the next write starts the WAL
        // over (SQLite's own hook does the same at the lower threshold).
        // SAFETY: the connection and schema name SQLite passed to its hook.
        unsafe {
            ffi::sqlite3_wal_checkpoint(db, schema);
        }
    } else {
        // One pass each time the WAL grows by a step past the threshold, not one per commit:
        // under load passes back to back would only compete with the writer.
        let step = frames / STEP;
        let before = wanted.step.swap(step, Ordering::Relaxed);
        if frames >= FRAMES && step != before {
            wanted.notify.notify_one();
        }
    }
    ffi::SQLITE_OK
}

async fn run(path: PathBuf, wanted: Arc<Wanted>, stop: CancellationToken) {
    let mut conn: Option<Conn> = None;
    loop {
        tokio::select! {
            () = wanted.notify.notified() => {}
            () = stop.cancelled() => break,
        }
        let path = path.clone();
        let held = conn.take();
        let ran = tokio::task::spawn_blocking(move || {
            let mut conn = match held {
                Some(conn) => conn,
                None => Conn::open_read_write(&path)?,
            };
            let done = conn.db().exec(c"PRAGMA wal_checkpoint(PASSIVE)");
            done.map(|()| conn)
        })
        .await;
        match ran {
            Ok(Ok(kept)) => {
                wanted.runs.fetch_add(1, Ordering::Relaxed);
                conn = Some(kept);
            }
            // The WAL's next step of growth asks the task again, and at twice the threshold
            // the writer's own commit checkpoints.
            Ok(Err(e)) => tracing::error!("cannot checkpoint the database's WAL: {e}"),
            Err(e) => tracing::error!("the WAL checkpoint stopped: {e}"),
        }
    }
    // Closed here, before the store's last connection.
    drop(conn);
}

#[cfg(test)]
mod tests {
    use crate::domain::{ChatRef, Role};
    use crate::store::{NewMessage, Store};

    /// Past the threshold the task checkpoints; the commits themselves leave it to the task
    /// (with it stopped the WAL grows past SQLite's 1,000 pages) until twice that, so the WAL
    /// stays bounded either way; closing the store checkpoints what is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_beside_the_writes_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let chat = ChatRef::new("console", "1");
        let conversation = store.open_conversation(&chat, "operator").await.unwrap();
        let wal = dir.path().join("operator.db-wal");
        let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let text = "x".repeat(3000);
        let write = |i: usize| {
            let store = store.clone();
            let text = format!("{i}{text}");
            async move {
                store
                    .append_message(conversation.id, Role::User, &NewMessage::text(text))
                    .await
                    .unwrap();
            }
        };
        // A WAL page is 4,096 bytes and a 24-byte header.
        let pages = |n: u64| n * 4120;
        // Each message takes a page of its own and more: 2,000 of them are thousands of pages.
        for i in 0..2000 {
            write(i).await;
        }
        assert!(store.checkpoints.runs() > 0, "the task never checkpointed");
        assert!(
            wal_size() <= pages(2200),
            "the WAL grew to {} bytes",
            wal_size()
        );
        store.checkpoints.close().await;
        let mut largest = 0;
        for i in 2000..4000 {
            write(i).await;
            largest = largest.max(wal_size());
        }
        assert!(
            largest > pages(1100),
            "without the task the commits checkpointed at SQLite's threshold ({largest} bytes)"
        );
        assert!(largest <= pages(2200), "the WAL grew to {largest} bytes");
        let stored = store.messages_after(conversation.id, 0).await.unwrap();
        assert_eq!(stored.len(), 4000);
        store.close().await;
        // The last connection's close checkpoints and removes the WAL. Once, on a loaded CI
        // machine, the file was still there right after the close returned (which connection
        // closed late was not found): it gets a bounded while to go.
        for _ in 0..100 {
            if !wal.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(
            !wal.exists(),
            "the last connection's close checkpointed what was left"
        );
    }
}
