//! Master key rotation (`operator secrets rotate-key`): every secret is re-sealed under a new key
//! in one transaction. The new key is written to `master.key.new` before anything changes, so a
//! rotation cut short is finished by running the command again: records already re-sealed open
//! with the new key, the others with the old one.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::secrets::{KeySource, MasterKey};
use crate::store::Store;

/// Where a rotation keeps the new key until it is done.
pub const PENDING_KEY: &str = "master.key.new";

/// Rotates the master key of the state in `state_dir`. With the key in a systemd credential,
/// `out` names where the new key goes (the credential itself is read-only). Returns a summary.
pub async fn rotate(state_dir: &Path, out: Option<&Path>) -> anyhow::Result<String> {
    let store = Store::open_and_migrate(state_dir).await?;
    let (old, source) = MasterKey::load_or_create(state_dir)?;
    let target: PathBuf = match (&source, out) {
        (KeySource::Credential(path), None) => bail!(
            "the master key comes from the systemd credential {}; pass --out PATH for the new key, \
             then point LoadCredential=operator-master-key at it",
            path.display()
        ),
        (KeySource::Credential(_), Some(out)) => out.to_path_buf(),
        (KeySource::File(_) | KeySource::Created(_), Some(_)) => bail!(
            "--out is only for a key held in a systemd credential; this key lives in {}",
            state_dir.join(crate::secrets::KEY_FILE).display()
        ),
        (KeySource::File(path) | KeySource::Created(path), None) => path.clone(),
    };
    let pending = state_dir.join(PENDING_KEY);
    let new = if pending.exists() {
        MasterKey::read(&pending)?
    } else {
        let key = MasterKey::generate();
        key.write(&pending)?;
        key
    };
    let secrets = store.list_secrets().await?;
    let mut resealed = Vec::with_capacity(secrets.len());
    for secret in &secrets {
        let key = if secret.key_id == new.fingerprint() {
            &new
        } else {
            &old
        };
        // One secret that does not open stops the rotation before anything changed.
        let value = key.open(&secret.name, &secret.sealed, &secret.key_id)?;
        resealed.push((secret.name.clone(), new.seal(&secret.name, &value)));
    }
    store.reseal_secrets(&resealed, new.fingerprint()).await?;
    store.close().await;
    new.write(&target)?;
    std::fs::remove_file(&pending)?;
    Ok(format!(
        "re-sealed {} secret(s) under the new master key {}; it is in {}",
        resealed.len(),
        new.fingerprint(),
        target.display()
    ))
}
