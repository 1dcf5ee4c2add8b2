//! Agents and instances made for a while (a skill test's clone, an evaluation's clones,
//! variants): a guard that removes them when it is dropped, so a call that fails or is
//! cancelled leaves nothing behind.

use super::{OpError, Ops};

/// Agents and instances made for a while: removed when dropped unless kept, so a call that
/// fails or is cancelled leaves nothing behind.
pub(super) struct Throwaway {
    ops: Ops,
    names: Vec<String>,
}

impl Throwaway {
    pub(super) fn new(ops: &Ops) -> Self {
        Self {
            ops: ops.clone(),
            names: Vec::new(),
        }
    }

    /// Counts `name` (an agent, its instance, maybe a variant) among them.
    pub(super) fn add(&mut self, name: String) {
        self.names.push(name);
    }

    /// Removes them now, and waits.
    pub(super) async fn remove(mut self) {
        let names = std::mem::take(&mut self.names);
        remove_all(&self.ops, names).await;
    }

    /// They stay (variants a later `agent_promote` decides about).
    pub(super) fn keep(mut self) {
        self.names.clear();
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.names);
        if !names.is_empty() {
            let ops = self.ops.clone();
            tokio::spawn(async move { remove_all(&ops, names).await });
        }
    }
}

async fn remove_all(ops: &Ops, names: Vec<String>) {
    for name in names {
        let _ = ops.store().delete_agent(&name).await;
        let _ = ops.store().delete_variant(&name).await;
        if let Err(e) = super::instances::delete_instance(ops, &name).await
            && !matches!(e, OpError::NotFound(_))
        {
            tracing::warn!("the throwaway instance {name} was not removed: {e}");
        }
    }
}
