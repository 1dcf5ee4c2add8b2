//! `operator restore`: an archive unpacked into a scratch directory next to the target, every
//! member checked against the manifest, and only then moved into the (empty) state directory.
//! A damaged, truncated or newer archive is refused with nothing written. Workspaces in the
//! archive are restored into volumes when the engine answers.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{DB, FORMAT, KEY, MANIFEST, Manifest, Scratch, sha256_of};
use crate::config::Settings;
use crate::store::Store;

/// Restores `archive` into `state` (default: the configured state directory), which must be
/// missing or empty. Returns what to tell the person.
pub async fn restore(
    settings: &Settings,
    archive: &Path,
    state: Option<PathBuf>,
) -> anyhow::Result<String> {
    let target = state.unwrap_or_else(|| settings.state_dir());
    refuse_unless_empty(&target)?;
    let near = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(near).with_context(|| format!("creating {}", near.display()))?;
    let scratch = Scratch::new(near, "restore")?;
    let manifest = unpack_and_verify(archive, &scratch.0)?;

    // Every check held: the state is put in place.
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    std::fs::rename(scratch.0.join(DB), target.join(DB))
        .with_context(|| format!("moving the database into {}", target.display()))?;
    if manifest.key_included {
        use std::os::unix::fs::PermissionsExt;
        let key = target.join(KEY);
        std::fs::rename(scratch.0.join(KEY), &key)?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut text = format!(
        "restored {} into {}: {} agents, {} conversations, {} messages, {} secrets (made by operator {} at migration {})",
        archive.display(),
        target.display(),
        count(&manifest, "agents"),
        count(&manifest, "conversations"),
        count(&manifest, "messages"),
        count(&manifest, "secrets"),
        manifest.daemon_version,
        manifest.migration_level,
    );
    let workspaces: Vec<&str> = manifest
        .members
        .iter()
        .filter_map(|m| m.name.strip_prefix("workspaces/"))
        .filter_map(|n| n.strip_suffix(".tar"))
        .collect();
    if !workspaces.is_empty() {
        let mut restored = settings.clone();
        restored.state.dir = Some(target.clone());
        text.push('\n');
        text.push_str(&restore_workspaces(&restored, &scratch.0, &workspaces).await);
    }
    text.push('\n');
    text.push_str(&match (&manifest.key_fingerprint, manifest.key_included) {
        (Some(fp), true) => format!("the master key ({fp}) was restored with it; secrets are readable"),
        (Some(fp), false) => format!(
            "the secrets are sealed with master key {fp}, which was not in the archive: put it at {} \
             (or in the systemd credential) before starting, or they stay unreadable; everything \
             else works either way",
            target.join(KEY).display()
        ),
        (None, _) => "the saved state had no master key".to_string(),
    });
    Ok(text)
}

fn count(manifest: &Manifest, table: &str) -> i64 {
    manifest.tables.get(table).copied().unwrap_or(0)
}

/// A restore goes only into a state directory that is missing or empty.
fn refuse_unless_empty(target: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(target) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    bail!(
        "{} is not empty (it holds {}{more}); restore only into an empty state directory, \
         or name another one with --state",
        target.display(),
        shown.join(", ")
    )
}

/// Unpacks the archive and checks it whole: the manifest, the format, the migration level,
/// and the size and sha256 of every member; nothing unlisted. Returns the manifest.
fn unpack_and_verify(archive: &Path, into: &Path) -> anyhow::Result<Manifest> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.unpack(into).map_err(|e| {
        anyhow::anyhow!(
            "{} is damaged or cut short and cannot be read ({e}); nothing was restored",
            archive.display()
        )
    })?;
    let text = std::fs::read_to_string(into.join(MANIFEST)).map_err(|_| {
        anyhow::anyhow!(
            "{} has no {MANIFEST}: it is not an operator backup; nothing was restored",
            archive.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the manifest of {} is unreadable ({e}); nothing was restored",
            archive.display()
        )
    })?;
    if manifest.format > FORMAT {
        bail!(
            "{} is backup format {}, newer than this operator ({}) reads (format {FORMAT}); \
             restore it with a newer operator. Nothing was restored.",
            archive.display(),
            manifest.format,
            env!("CARGO_PKG_VERSION")
        );
    }
    let known = Store::known_migration_level();
    if manifest.migration_level > known {
        bail!(
            "{} was made by operator {} at migration {}, newer than this one knows ({known}); \
             restore it with that version or later. Nothing was restored.",
            archive.display(),
            manifest.daemon_version,
            manifest.migration_level
        );
    }
    if !manifest.members.iter().any(|m| m.name == DB) {
        bail!(
            "{} holds no database; nothing was restored",
            archive.display()
        );
    }
    for member in &manifest.members {
        let path = into.join(&member.name);
        let size = std::fs::metadata(&path).map(|m| m.len()).map_err(|_| {
            anyhow::anyhow!(
                "{} lacks {} that its manifest lists; nothing was restored",
                archive.display(),
                member.name
            )
        })?;
        if size != member.size || sha256_of(&path)? != member.sha256 {
            bail!(
                "{} in {} does not match its checksum: the archive is damaged; nothing was restored",
                member.name,
                archive.display()
            );
        }
    }
    for found in files_under(into)? {
        if found != MANIFEST && !manifest.members.iter().any(|m| m.name == found) {
            bail!(
                "{} holds {found}, which its manifest does not list; nothing was restored",
                archive.display()
            );
        }
    }
    Ok(manifest)
}

/// Every file under `dir`, as a path relative to it with `/` separators.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    Ok(out)
}

/// Fills each instance's workspace volume from the archive; an engine that does not answer
/// (or a volume already there) is reported, and the rest still goes on.
async fn restore_workspaces(settings: &Settings, scratch: &Path, names: &[&str]) -> String {
    let core = match crate::app::build(settings, Vec::new()).await {
        Ok(core) => core,
        Err(e) => return format!("workspaces not restored: {e:#}"),
    };
    let mut lines = Vec::new();
    for name in names {
        let path = scratch.join("workspaces").join(format!("{name}.tar"));
        match core.ops.restore_workspace(name, &path).await {
            Ok(()) => lines.push(format!("workspace of {name} restored")),
            Err(e) => lines.push(format!("workspace of {name} not restored: {e}")),
        }
    }
    core.store.close().await;
    lines.join("\n")
}
