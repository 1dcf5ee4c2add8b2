//! The read connections: a few, opened as reads need them, handed out without sqlx's pool.
//!
//! sqlx's pool tests every connection on its way back with a ping, a round trip to the
//! connection's thread in a task of its own: a turn's five reads cost five more thread wakeups
//! each way for nothing, since a SQLite file connection cannot hang up. Here a connection that
//! ran its statement goes straight back to the idle list. Reads never begin transactions, so a
//! connection dropped mid-statement (its future cancelled) holds no snapshot: its worker stops
//! the statement when it finds the rows' receiver gone, before it runs the next one.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::ConnectOptions;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::counters;
use super::raw::{Conn, Db};
use super::{Result, StoreError};

/// Up to `size` read connections, cheap to clone.
#[derive(Clone)]
pub(super) struct Readers {
    inner: Arc<Inner>,
}

struct Inner {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection that may exist; closed by [`Readers::close`].
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Readers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readers")
            .field("idle", &self.idle().len())
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// Opens the first connection now, so a database that cannot be read fails the start.
    pub(super) async fn open(options: SqliteConnectOptions, size: usize) -> sqlx::Result<Self> {
        let readers = Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::with_capacity(size)),
                permits: Arc::new(Semaphore::new(size)),
            }),
        };
        let first = readers.connect().await?;
        readers.idle().push(first);
        Ok(readers)
    }

    /// A connection to read with, waiting while all are in use; back to the idle list on drop.
    pub(super) async fn get(&self) -> sqlx::Result<Reader> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Reader {
            conn: Some(conn),
            readers: Arc::clone(&self.inner),
            _permit: permit,
        })
    }

    /// Refuses further reads and closes the idle connections (one still in use closes when
    /// it is dropped).
    pub(super) async fn close(&self) {
        self.inner.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for conn in idle {
            let _ = conn.close().await;
        }
    }

    async fn connect(&self) -> sqlx::Result<SqliteConnection> {
        let mut conn = self.inner.options.connect().await?;
        counters::install(&mut conn, false).await?;
        Ok(conn)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A read connection on loan: use it as `&mut *reader` wherever sqlx takes an executor.
pub(super) struct Reader {
    conn: Option<SqliteConnection>,
    readers: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Reader {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.conn
            .as_ref()
            .expect("a reader holds its connection until dropped")
    }
}

impl DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a reader holds its connection until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // After close the connection is dropped here, which ends its thread.
        if let Some(conn) = self.conn.take()
            && !self.readers.permits.is_closed()
        {
            self.readers
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// The hot path's reads (a turn's conversation, history and fleet): run where they are called,
/// on read-only connections of our own (`raw.rs`), with no thread round trip. Such a read is
/// short (an indexed lookup, a conversation's messages since its summary); it blocks its
/// thread for that long. There are as many connections as reads have ever run at once, at
/// most [`INLINE_IDLE`] kept.
#[derive(Clone)]
pub(super) struct Inline {
    inner: Arc<InlineInner>,
}

/// Idle inline connections kept; a read beyond opens one of its own.
const INLINE_IDLE: usize = 4;

struct InlineInner {
    path: PathBuf,
    idle: Mutex<Vec<Conn>>,
    closed: AtomicBool,
}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inline")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Inline {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            inner: Arc::new(InlineInner {
                path,
                idle: Mutex::new(Vec::with_capacity(INLINE_IDLE)),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `read` on a connection; fails at once after [`Inline::close`].
    pub(super) fn read<T>(&self, read: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StoreError::Db(sqlx::Error::PoolClosed));
        }
        let idle = self.idle().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => Conn::open_read_only(&self.inner.path)?,
        };
        let out = read(conn.db());
        let mut idle = self.idle();
        if !self.inner.closed.load(Ordering::Acquire) && idle.len() < INLINE_IDLE {
            idle.push(conn);
        }
        out
    }

    /// Closes the idle connections; later reads fail.
    pub(super) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.idle().clear();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::Store;

    /// More reads at once than connections all finish; a read whose future is dropped mid-way
    /// leaves its connection usable; after close a read (inline ones too) fails instead of waiting.
    #[tokio::test]
    async fn reads_share_three_connections_survive_cancellation_and_stop_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_and_migrate(dir.path()).await.unwrap();
        let reads = (0..20).map(|_| store.ping());
        let results = tokio::time::timeout(
            Duration::from_secs(30),
            futures_util::future::join_all(reads),
        )
        .await
        .expect("reads finish");
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(store.read.idle().len() <= 3);

        // A slow statement, cancelled while it runs (a recursive count to two million).
        for _ in 0..5 {
            let mut reader = store.read.get().await.unwrap();
            let slow = sqlx::query_scalar::<_, i64>(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) \
                 SELECT COUNT(*) FROM n",
            )
            .fetch_one(&mut *reader);
            let cut = tokio::time::timeout(Duration::from_millis(5), slow).await;
            assert!(cut.is_err(), "the count should still be running");
        }
        let answered = tokio::time::timeout(Duration::from_secs(60), store.ping()).await;
        assert!(matches!(answered, Ok(Ok(()))), "{answered:?}");

        // The hot path's inline reads too, on a connection of their own.
        assert!(store.list_instances().await.unwrap().is_empty());

        store.close().await;
        let after = tokio::time::timeout(Duration::from_secs(5), store.ping())
            .await
            .expect("a read after close does not wait");
        assert!(after.is_err());
        assert!(
            store.list_instances().await.is_err(),
            "inline reads stop too"
        );
    }
}
