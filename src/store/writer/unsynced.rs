//! Commits that skipped their fsync, synced soon after all the same (see the writer's notes).

use std::path::Path;

use tokio::time::Instant;

use super::LAZY_FOR;

/// The first commit since the last synced one that skipped its fsync, if any: it is synced
/// [`LAZY_FOR`] after it at the latest.
#[derive(Clone, Copy, Default)]
pub(super) struct Unsynced(Option<Instant>);

impl Unsynced {
    /// When the commits not yet synced must be.
    pub(super) fn deadline(self) -> Option<Instant> {
        self.0.map(|since| since + LAZY_FOR)
    }

    /// Notes a batch committed at `now`, synced or not.
    pub(super) fn committed(&mut self, synced: bool, now: Instant) {
        if synced {
            self.0 = None;
        } else {
            self.0.get_or_insert(now);
        }
    }
}

/// Syncs the WAL file from a descriptor of its own: every frame SQLite has written to it, the
/// commits that skipped their fsync among them, is then on disk, as a synced commit would
/// leave it. A WAL that is gone was copied back into the database, whose file SQLite syncs
/// when it does so.
pub(super) async fn sync_wal(wal: &Path) {
    let wal = wal.to_path_buf();
    let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
        Ok(file) => file.sync_data().map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    })
    .await;
    match synced {
        Ok(Ok(true)) => crate::store::counters::wal_synced(),
        Ok(Ok(false)) => {}
        Ok(Err(e)) => tracing::error!("cannot sync the database's WAL file: {e}"),
        Err(e) => tracing::error!("cannot sync the database's WAL file: {e}"),
    }
}
