//! Commits that skipped their fsync, synced soon after all the same (see the writer's notes).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::LAZY_FOR;
use crate::store::checkpoint::WalCommits;

/// Times the writer synced the WAL file on its own, over the process.
static WAL_SYNCS: AtomicU64 = AtomicU64::new(0);

/// The writer's commits since its last synced one: whether any skipped its fsync, and from
/// when. Those are synced [`LAZY_FOR`] after the first of them at the latest.
pub(super) struct Unsynced {
    since: Option<Instant>,
    /// The database's WAL file.
    wal: PathBuf,
    /// Counts the commits that wrote (a batch that ran nothing, or was rolled back, did not).
    commits: WalCommits,
}

impl Unsynced {
    pub(super) fn new(wal: PathBuf, commits: WalCommits) -> Self {
        Self {
            since: None,
            wal,
            commits,
        }
    }

    /// When the commits not yet synced must be.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + LAZY_FOR)
    }

    /// Whether they must be by `now`: the next batch is synced then.
    pub(super) fn overdue(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| deadline <= now)
    }

    /// Runs a batch at `now` with its commit `synced` or not, and notes what it committed.
    pub(super) fn track(&mut self, synced: bool, now: Instant, batch: impl FnOnce()) {
        let before = self.commits.get();
        batch();
        if self.commits.get() == before {
            return;
        }
        if synced {
            self.since = None;
        } else {
            self.since.get_or_insert(now);
        }
    }

    /// Syncs the WAL file from a descriptor of its own: every frame SQLite has written to it,
    /// the commits that skipped their fsync among them, is then on disk, as a synced commit
    /// would leave it. A WAL that is gone was copied back into the database, whose file SQLite
    /// syncs when it does so.
    pub(super) async fn sync(&mut self) {
        self.since = None;
        let wal = self.wal.clone();
        let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
            Ok(file) => file.sync_data().map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await;
        match synced {
            Ok(Ok(true)) => {
                WAL_SYNCS.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::error!("cannot sync the database's WAL file: {e}"),
            Err(e) => tracing::error!("cannot sync the database's WAL file: {e}"),
        }
    }
}

/// Times the writer synced the WAL file on its own (no synced commit came in time).
#[cfg(test)]
pub(super) fn wal_syncs() -> u64 {
    WAL_SYNCS.load(Ordering::Relaxed)
}
