//! Backups the daemon takes by itself (`[backup] dir`, `every`, `keep`) and on an owner's
//! `/backup`: written into the backup directory, the oldest beyond `keep` removed, each one
//! recorded in the activity feed; a failure is reported to the owners.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::Options;
use crate::config::Settings;
use crate::domain::{ActorRole, now_millis};
use crate::scheduler::Schedule;
use crate::store::{NewActivity, Store};

/// Where backups go: `[backup] dir`, else `backups/` in the state directory.
pub fn directory(settings: &Settings) -> PathBuf {
    match settings.backup.dir.trim() {
        "" => settings.state_dir().join("backups"),
        dir => PathBuf::from(dir),
    }
}

/// Takes one backup into the backup directory now and prunes old ones; records it. Returns
/// what to tell the person, or why it failed.
pub async fn now(settings: &Settings, store: &Store, actor: &str) -> Result<String, String> {
    let dir = directory(settings);
    let result = async {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f");
        let out = dir.join(format!("operator-backup-{stamp}.tar.gz"));
        let options = Options {
            out: Some(out),
            ..Options::default()
        };
        let text = super::backup(settings, options)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let removed = prune(&dir, settings.backup.keep);
        Ok::<_, String>(if removed > 0 {
            format!(
                "{text}\n{removed} older backups removed (keeping {})",
                settings.backup.keep
            )
        } else {
            text
        })
    }
    .await;
    let (kind, summary) = match &result {
        Ok(text) => (
            "backup.done",
            text.lines().next().unwrap_or_default().to_string(),
        ),
        Err(e) => ("backup.failed", format!("backup failed: {e}")),
    };
    store.record(NewActivity {
        kind: kind.into(),
        actor: actor.to_string(),
        role: Some(ActorRole::System),
        summary,
        ..NewActivity::default()
    });
    result
}

/// The backups in `dir`, oldest first (their names sort by time).
pub fn list(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let size = e.metadata().ok()?.len();
                    (name.starts_with("operator-backup-") && name.ends_with(".tar.gz"))
                        .then_some((name, size))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Removes the oldest backups beyond `keep`; returns how many went.
fn prune(dir: &std::path::Path, keep: usize) -> usize {
    let found = list(dir);
    let extra = found.len().saturating_sub(keep);
    found
        .iter()
        .take(extra)
        .filter(|(name, _)| std::fs::remove_file(dir.join(name)).is_ok())
        .count()
}

/// Takes a backup at every `[backup] every` until `stop`, when `[backup] dir` is set; hands a
/// failure to `report` (for the owners).
pub async fn run(
    settings: Settings,
    store: Store,
    report: impl Fn(String) + Send + Sync,
    stop: CancellationToken,
) {
    if settings.backup.dir.trim().is_empty() {
        return;
    }
    let schedule = match Schedule::parse(&settings.backup.every, "UTC") {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("[backup] every: {e}");
            return;
        }
    };
    loop {
        let Some(next) = schedule.next_after(now_millis()) else {
            return;
        };
        let wait =
            std::time::Duration::from_millis(u64::try_from(next - now_millis()).unwrap_or(0));
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match now(&settings, &store, "schedule").await {
            Ok(text) => tracing::info!("{}", text.lines().next().unwrap_or_default()),
            Err(e) => {
                tracing::error!("scheduled backup failed: {e}");
                report(format!("⚠️ The scheduled backup failed: {e}"));
            }
        }
    }
}
