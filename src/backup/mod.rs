//! Backups: the daemon's state saved as one `.tar.gz` while it runs (a consistent SQLite
//! snapshot through `VACUUM INTO`, never a copy of the live file), with a manifest that names
//! the format, the daemon and migration level, the master key's fingerprint, the rows per table
//! and the sha256 of every member; brought back by [`restore`] into an empty state directory
//! only after every checksum holds. Conversations are exported by `export.rs`.
//!
//! The master key goes into an archive only when asked (`--include-key`), and such an archive
//! is written readable by its owner only. This module reads the store; it never changes it.

pub mod export;
mod restore;
pub mod scheduled;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::secrets::MasterKey;
use crate::store::Store;

pub use restore::restore;

/// The archive format this daemon writes, and the newest it reads.
pub const FORMAT: u32 = 1;
const DB: &str = "operator.db";
const KEY: &str = "master.key";
const MANIFEST: &str = "manifest.json";

/// What an archive holds, written last into it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub daemon_version: String,
    /// The newest migration applied to the saved database.
    pub migration_level: i64,
    /// When the snapshot was taken, in milliseconds since the epoch.
    pub created_at: i64,
    /// The master key the secrets are sealed with (`None`: the state had no key yet).
    pub key_fingerprint: Option<String>,
    pub key_included: bool,
    /// Rows per table of the saved database.
    pub tables: BTreeMap<String, i64>,
    pub members: Vec<Member>,
}

/// One file of an archive.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// What `operator backup` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the archive goes; default `operator-backup-<time>.tar.gz` here.
    pub out: Option<PathBuf>,
    pub workspaces: bool,
    pub include_key: bool,
}

/// Removes a scratch directory whatever happens.
struct Scratch(PathBuf);

impl Scratch {
    fn new(near: &Path, what: &str) -> anyhow::Result<Self> {
        let dir = near.join(format!(".operator-{what}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `operator backup`: snapshots the state of `settings` (the daemon may be running) into one
/// archive and returns what to tell the person.
pub async fn backup(settings: &Settings, options: Options) -> anyhow::Result<String> {
    let state = settings.state_dir();
    if !state.join(DB).is_file() {
        bail!(
            "{} holds no database ({DB}); nothing to back up",
            state.display()
        );
    }
    let scratch = Scratch::new(&state, "backup")?;
    let store = Store::open(&state).await?;
    let snapshot = scratch.0.join(DB);
    let taken = store.snapshot_into(&snapshot).await;
    store.close().await;
    taken.context("taking a snapshot of the database")?;
    // Counts and level come from the snapshot itself, so they describe exactly what is saved.
    let (tables, migration_level) = {
        let saved = Store::open(&scratch.0).await?;
        let read = (saved.table_counts().await, saved.migration_level().await);
        saved.close().await;
        (read.0?, read.1?)
    };
    for leftover in ["operator.db-wal", "operator.db-shm"] {
        let _ = std::fs::remove_file(scratch.0.join(leftover));
    }
    let key = MasterKey::load_existing(&state)?;
    let mut files: Vec<(String, PathBuf)> = vec![(DB.to_string(), snapshot)];
    if options.include_key {
        let Some((_, path)) = &key else {
            bail!("--include-key: {} has no master key yet", state.display());
        };
        let copy = scratch.0.join(KEY);
        std::fs::copy(path, &copy).with_context(|| format!("reading {}", path.display()))?;
        files.push((KEY.to_string(), copy));
    }
    if options.workspaces {
        files.extend(workspaces(settings, &scratch.0).await?);
    }
    let mut members = Vec::new();
    for (name, path) in &files {
        members.push(Member {
            name: name.clone(),
            size: std::fs::metadata(path)?.len(),
            sha256: sha256_of(path)?,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        migration_level,
        created_at: crate::domain::now_millis(),
        key_fingerprint: key.as_ref().map(|(k, _)| k.fingerprint().to_string()),
        key_included: options.include_key,
        tables,
        members,
    };
    let out = options.out.clone().unwrap_or_else(default_name);
    write_archive(&out, &files, &manifest, options.include_key)?;
    Ok(summary(&out, &manifest))
}

/// Every instance's `/workspace`, streamed from its engine into `dir/workspaces/<name>.tar`.
async fn workspaces(settings: &Settings, dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    use futures_util::StreamExt;
    let core = crate::app::build(settings, Vec::new()).await?;
    let instances = core.store.list_instances().await?;
    let into = dir.join("workspaces");
    std::fs::create_dir_all(&into)?;
    let mut files = Vec::new();
    for instance in instances {
        let mut stream = core
            .ops
            .instances()
            .export_workspace(&instance.name)
            .await
            .with_context(|| format!("reading the workspace of {}", instance.name))?;
        let path = into.join(format!("{}.tar", instance.name));
        let mut file = std::fs::File::create(&path)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.with_context(|| format!("reading {}", instance.name))?)?;
        }
        file.sync_all()?;
        files.push((format!("workspaces/{}.tar", instance.name), path));
    }
    core.store.close().await;
    Ok(files)
}

fn default_name() -> PathBuf {
    let now = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    PathBuf::from(format!("operator-backup-{now}.tar.gz"))
}

/// Writes the archive next to `out` and moves it into place once complete; with the key in it,
/// only its owner may read it.
fn write_archive(
    out: &Path,
    files: &[(String, PathBuf)],
    manifest: &Manifest,
    secret: bool,
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = out.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o640 })
        .open(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, path) in files {
        tar.append_path_with_name(path, name)
            .with_context(|| format!("adding {name}"))?;
    }
    let json = serde_json::to_vec_pretty(manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime((manifest.created_at / 1000) as u64);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST, json.as_slice())?;
    let file = tar.into_inner()?.finish()?;
    file.sync_all()?;
    std::fs::rename(&partial, out).with_context(|| format!("moving into {}", out.display()))?;
    Ok(())
}

fn summary(out: &Path, manifest: &Manifest) -> String {
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let count = |t: &str| manifest.tables.get(t).copied().unwrap_or(0);
    let mut text = format!(
        "backup written to {} ({} KiB): {} agents, {} conversations, {} messages, {} secrets, {} automations",
        out.display(),
        size.div_ceil(1024),
        count("agents"),
        count("conversations"),
        count("messages"),
        count("secrets"),
        count("automations"),
    );
    let workspaces = manifest
        .members
        .iter()
        .filter(|m| m.name.starts_with("workspaces/"))
        .count();
    if workspaces > 0 {
        text.push_str(&format!(", {workspaces} workspaces"));
    }
    match (&manifest.key_fingerprint, manifest.key_included) {
        (Some(fp), true) => text.push_str(&format!(
            "\nthe master key ({fp}) is INSIDE this archive: anyone holding it can read every secret; it is readable by its owner only (0600)"
        )),
        (Some(fp), false) => text.push_str(&format!(
            "\nthe master key ({fp}) is not included: keep a copy of it, or restored secrets stay unreadable"
        )),
        (None, _) => {}
    }
    text
}

/// The sha256 of a file, read in pieces.
fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}
