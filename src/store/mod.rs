//! Persistence: sqlx repositories over SQLite, with the migrations embedded in the binary.
//!
//! The store knows rows and columns, never behaviour: it does not call agents, operations or
//! channels. `RowNotFound` becomes [`StoreError::NotFound`] here and nowhere else.

mod activity;
mod agents;
mod approvals;
mod automations;
mod chatbots;
mod checkpoint;
mod conversations;
pub mod counters;
mod evolve;
mod instances;
mod jobs;
mod mcp;
mod messages;
mod raw;
mod readers;
mod secrets;
mod skills;
mod turns;
mod usage;
mod writer;

mod kv {
    //! Daemon-wide key/value settings.

    use super::{Result, Store};

    impl Store {
        pub async fn kv_get(&self, key: &str) -> Result<Option<String>> {
            Ok(sqlx::query_scalar("SELECT value FROM kv WHERE key = $1")
                .bind(key)
                .fetch_optional(&mut *self.reader().await?)
                .await?)
        }

        /// Records an API key by its hash; returns its id.
        pub async fn create_api_key(&self, name: &str, hash: &str) -> Result<i64> {
            Ok(sqlx::query_scalar(
                "INSERT INTO api_keys (name, hash, created_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(name)
            .bind(hash)
            .bind(crate::domain::now_millis())
            .fetch_one(&self.write)
            .await?)
        }

        /// Every API key: (id, name, created at, revoked at).
        pub async fn api_keys(&self) -> Result<Vec<(i64, String, i64, Option<i64>)>> {
            Ok(
                sqlx::query_as("SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY id")
                    .fetch_all(&mut *self.reader().await?)
                    .await?,
            )
        }

        /// Whether a key with this hash exists and is not revoked.
        pub async fn api_key_valid(&self, hash: &str) -> Result<bool> {
            Ok(sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
            )
            .bind(hash)
            .fetch_one(&mut *self.reader().await?)
            .await?
                > 0)
        }

        /// Revokes a key; returns whether there was such a live key.
        pub async fn revoke_api_key(&self, id: i64) -> Result<bool> {
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(id)
            .bind(crate::domain::now_millis())
            .execute(&self.write)
            .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn kv_set(&self, key: &str, value: &str) -> Result<()> {
            sqlx::query("INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(value)
                .execute(&self.write)
                .await?;
            Ok(())
        }
    }
}

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use activity::{ActivityEntry, ActivityFilter, NewActivity};
pub use agents::{Agent, AgentPatch};
pub use approvals::{ApprovalRecord, NewApproval};
pub use automations::{AutomationRecord, AutomationSpec, RunRecord, WebhookRecord};
pub use chatbots::{BotRecord, NewOutbox, OutboxRow, PairingRecord, PendingUpdate};
pub use conversations::{Conversation, NewMessage};
pub use evolve::{Evaluation, Variant};
pub use instances::{InstanceRecord, InstanceStatus};
pub use jobs::{JobRecord, JobStatus, NewJob};
pub use mcp::McpServerRecord;
pub use secrets::{GrantTarget, SecretRecord};
pub use skills::{SkillInstall, SkillVersion};
pub use turns::Unanswered;
pub use usage::{NewUsage, UsageRow};

/// The migrations, in order. Files under `migrations/` are never edited once landed.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../../migrations/0001_foundation.sql"),
    ),
    (
        2,
        "instances",
        include_str!("../../migrations/0002_instances.sql"),
    ),
    (3, "jobs", include_str!("../../migrations/0003_jobs.sql")),
    (
        4,
        "secrets",
        include_str!("../../migrations/0004_secrets.sql"),
    ),
    (
        5,
        "automations",
        include_str!("../../migrations/0005_automations.sql"),
    ),
    (
        6,
        "skills",
        include_str!("../../migrations/0006_skills.sql"),
    ),
    (7, "admin", include_str!("../../migrations/0007_admin.sql")),
    (
        8,
        "telegram",
        include_str!("../../migrations/0008_telegram.sql"),
    ),
    (
        9,
        "api keys",
        include_str!("../../migrations/0009_api_keys.sql"),
    ),
    (
        10,
        "activity roles",
        include_str!("../../migrations/0010_activity_roles.sql"),
    ),
    (
        11,
        "docker hosts",
        include_str!("../../migrations/0011_docker_hosts.sql"),
    ),
    (
        12,
        "live conversations",
        include_str!("../../migrations/0012_live_conversations.sql"),
    ),
    (13, "usage", include_str!("../../migrations/0013_usage.sql")),
    (
        14,
        "images",
        include_str!("../../migrations/0014_images.sql"),
    ),
    (
        15,
        "evaluations",
        include_str!("../../migrations/0015_evaluations.sql"),
    ),
    (
        16,
        "runtimes",
        include_str!("../../migrations/0016_runtimes.sql"),
    ),
    (17, "mcp", include_str!("../../migrations/0017_mcp.sql")),
    (18, "acp", include_str!("../../migrations/0018_acp.sql")),
    (
        19,
        "awaiting",
        include_str!("../../migrations/0019_awaiting.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("state directory {path} cannot be used: {cause}")]
    StateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// An error SQLite gave a statement run on the raw handle (`raw.rs`).
    #[error("database error: {0}")]
    Sqlite(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("already exists ({})", db.message()))
            }
            other => StoreError::Db(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long any connection of the store waits for a lock before it gives up.
const BUSY: Duration = Duration::from_secs(10);

/// A cheap-to-clone handle on the database.
///
/// Writes go through a pool of one connection, so writers queue in async code instead of
/// meeting SQLite's busy handler (which sleeps); reads use a few connections of their own
/// (`readers.rs`), which WAL lets run beside the writer.
#[derive(Clone, Debug)]
pub struct Store {
    read: readers::Readers,
    /// The hot path's reads, run where they are called.
    inline: readers::Inline,
    write: SqlitePool,
    /// Group commit of the hot path's writes.
    writer: writer::Writer,
    activity: tokio::sync::mpsc::UnboundedSender<activity::Command>,
    live: tokio::sync::broadcast::Sender<ActivityEntry>,
    /// WAL checkpoints, run beside the writes instead of in one of them.
    checkpoints: std::sync::Arc<checkpoint::Checkpoints>,
}

impl Store {
    /// Opens (creating if needed) `operator.db` in `state_dir`. Does not migrate.
    pub async fn open(state_dir: &Path) -> Result<Self> {
        let state_err = |cause| StoreError::StateDir {
            path: state_dir.to_path_buf(),
            cause,
        };
        std::fs::create_dir_all(state_dir).map_err(state_err)?;
        // Fail early with a clear cause rather than with SQLite's "unable to open database".
        let probe = state_dir.join(".write-test");
        std::fs::write(&probe, b"").map_err(state_err)?;
        let _ = std::fs::remove_file(&probe);

        let path = state_dir.join("operator.db");
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::Db)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY);
        let checkpoints = std::sync::Arc::new(checkpoint::Checkpoints::spawn(path.clone()));
        let hooks = checkpoints.clone();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A SQLite file connection cannot hang up: no ping (a round trip) before each use.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                let hooks = hooks.clone();
                Box::pin(async move {
                    counters::install(conn, true).await?;
                    hooks.install(conn).await
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Db)?;
        let read = readers::Readers::open(options.read_only(true), 3)
            .await
            .map_err(StoreError::Db)?;
        let inline = readers::Inline::new(path);
        let live = activity::live_channel();
        let wal = state_dir.join("operator.db-wal");
        let writer = writer::Writer::spawn(write.clone(), wal, checkpoints.commits());
        let activity = activity::spawn_writer(writer.clone(), live.clone());
        Ok(Self {
            read,
            inline,
            write,
            writer,
            activity,
            live,
            checkpoints,
        })
    }

    /// Opens and applies every pending migration.
    pub async fn open_and_migrate(state_dir: &Path) -> Result<Self> {
        let store = Self::open(state_dir).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        let before = self.applied_migrations().await?;
        migrator().run(&self.write).await?;
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize> {
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&mut *self.reader().await?)
        .await?;
        if exists == 0 {
            return Ok(0);
        }
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *self.reader().await?)
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Migrations this binary knows that the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize> {
        Ok(MIGRATIONS
            .len()
            .saturating_sub(self.applied_migrations().await?))
    }

    /// Writes a consistent copy of the whole database to `path` (SQLite's `VACUUM INTO`) while
    /// the daemon goes on; `path` must not exist yet.
    pub async fn snapshot_into(&self, path: &Path) -> Result<()> {
        let target = path.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&mut *self.reader().await?)
            .await?;
        Ok(())
    }

    /// Rows per table (migrations' own table left out), by table name.
    pub async fn table_counts(&self) -> Result<std::collections::BTreeMap<String, i64>> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
        )
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let mut counts = std::collections::BTreeMap::new();
        for table in tables {
            // Table names come from the schema itself, quoted.
            let n: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM \"{}\"",
                table.replace('"', "\"\"")
            ))
            .fetch_one(&mut *self.reader().await?)
            .await?;
            counts.insert(table, n);
        }
        Ok(counts)
    }

    /// The newest migration applied (0 for a fresh database).
    pub async fn migration_level(&self) -> Result<i64> {
        if self.applied_migrations().await? == 0 {
            return Ok(0);
        }
        let level: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *self.reader().await?)
                .await?;
        Ok(level.unwrap_or(0))
    }

    /// The newest migration this binary knows.
    pub fn known_migration_level() -> i64 {
        MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
    }

    /// A read connection, for `&mut *self.reader().await?` where sqlx takes an executor.
    async fn reader(&self) -> std::result::Result<readers::Reader, sqlx::Error> {
        self.read.get().await
    }

    /// A cheap query that proves the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.reader().await?)
            .await?;
        Ok(())
    }

    /// Writes what is queued, then closes every connection.
    pub async fn close(&self) {
        self.flush_activity().await;
        self.writer.flush().await;
        self.read.close().await;
        self.inline.close();
        self.checkpoints.close().await;
        self.write.close().await;
    }
}

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// An update or delete that touched no row means its target did not exist.
pub(crate) fn touched(rows: u64, what: impl FnOnce() -> String) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::NotFound(what()));
    }
    Ok(())
}

/// An optional chat stored as `channel`, `chat_id`, `thread_id` columns (empty channel: none).
fn chat_from_row(row: &impl raw::Columns) -> Result<Option<crate::domain::ChatRef>> {
    let channel: String = row.column("channel")?;
    if channel.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::domain::ChatRef {
        channel,
        chat_id: row.column("chat_id")?,
        thread_id: row.column("thread_id")?,
    }))
}

/// The column values of an optional chat (empty strings for none).
pub(crate) fn chat_columns(chat: Option<&crate::domain::ChatRef>) -> (String, String, String) {
    match chat {
        Some(c) => (c.channel.clone(), c.chat_id.clone(), c.thread_id.clone()),
        None => Default::default(),
    }
}

/// Names what was not found, so errors read "agent daniel not found".
pub(crate) fn not_found(what: impl Into<String>) -> impl FnOnce(StoreError) -> StoreError {
    let what = what.into();
    move |e| match e {
        StoreError::NotFound(_) => StoreError::NotFound(what),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        assert_eq!(files.len(), MIGRATIONS.len(), "{files:?}");
        for (i, (file, (version, _, _))) in files.iter().zip(MIGRATIONS).enumerate() {
            assert_eq!(*version, i as i64 + 1);
            assert!(file.starts_with(&format!("{version:04}_")), "{file}");
        }
    }
}
