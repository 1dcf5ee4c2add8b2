//! The tools a turn offers the model. Those from the daemon's own operations depend only on who
//! asks (an owner or a member talking to Operator, or an agent on its own computer), so each
//! list is built once, with its size in tokens: building, measuring (serializing) and copying
//! some forty JSON schemas on every turn was about a sixth of a turn's CPU. A turn shares the
//! list; an agent's MCP tools, which come and go, are added to a copy.

use std::sync::{Arc, OnceLock};

use super::context::estimate_tokens;
use super::llm::ToolSpec;
use crate::domain::{Caller, CallerKind};
use crate::ops::{OpSpec, Ops};

/// A list of tools and what offering it costs in the model's context.
#[derive(Clone)]
pub(super) struct Toolset {
    pub(super) list: Arc<[ToolSpec]>,
    pub(super) tokens: usize,
}

/// Whose operations a turn offers.
#[derive(Clone, Copy)]
pub(super) enum Offer {
    /// Operator's, as far as the caller may use them (only the caller's kind decides).
    Operator(CallerKind),
    /// An agent's tools for its own instance.
    Workspace,
    /// None: an agent without an instance.
    Nothing,
}

impl Toolset {
    /// The operations offered, built on first use.
    pub(super) fn of(offer: Offer) -> Self {
        static OWNER: OnceLock<Toolset> = OnceLock::new();
        static MEMBER: OnceLock<Toolset> = OnceLock::new();
        static WORKSPACE: OnceLock<Toolset> = OnceLock::new();
        let (cell, build): (_, fn() -> Toolset) = match offer {
            Offer::Operator(CallerKind::Owner) => (&OWNER, || {
                Toolset::from_specs(Ops::available_to(&Caller::owner("")))
            }),
            Offer::Operator(CallerKind::Member) => (&MEMBER, || {
                Toolset::from_specs(Ops::available_to(&Caller::member("")))
            }),
            Offer::Workspace => (&WORKSPACE, || Toolset::from_specs(Ops::workspace_tools())),
            Offer::Nothing => return Toolset::new(Vec::new()),
        };
        cell.get_or_init(build).clone()
    }

    fn from_specs<'a>(specs: impl Iterator<Item = &'a OpSpec>) -> Self {
        Self::new(
            specs
                .map(|s| ToolSpec {
                    name: s.name.to_string(),
                    description: s.description.to_string(),
                    parameters: s.arguments_schema(),
                })
                .collect(),
        )
    }

    pub(super) fn new(list: Vec<ToolSpec>) -> Self {
        let tokens = list.iter().map(tool_tokens).sum();
        Self {
            list: list.into(),
            tokens,
        }
    }

    /// This list with `more` after it (a copy; the shared list is left as it is).
    pub(super) fn with(self, more: Vec<ToolSpec>) -> Self {
        if more.is_empty() {
            return self;
        }
        let tokens = self.tokens + more.iter().map(tool_tokens).sum::<usize>();
        let mut list = self.list.to_vec();
        list.extend(more);
        Self {
            list: list.into(),
            tokens,
        }
    }
}

/// What offering one tool costs in the model's context, roughly.
fn tool_tokens(tool: &ToolSpec) -> usize {
    estimate_tokens(&tool.description) + estimate_tokens(&tool.parameters.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared list is the one built from the operations, and its tokens are its tools'.
    #[test]
    fn lists_are_built_once_and_measured() {
        let owner = Toolset::of(Offer::Operator(CallerKind::Owner));
        let again = Toolset::of(Offer::Operator(CallerKind::Owner));
        assert!(Arc::ptr_eq(&owner.list, &again.list));
        let fresh = Toolset::from_specs(Ops::available_to(&Caller::owner("x")));
        assert_eq!(owner.list.as_ref(), fresh.list.as_ref());
        assert_eq!(owner.tokens, fresh.tokens);
        let member = Toolset::of(Offer::Operator(CallerKind::Member));
        assert!(
            member.list.len() < owner.list.len(),
            "members get fewer tools"
        );
        assert!(Toolset::of(Offer::Nothing).list.is_empty());
        let extra = ToolSpec {
            name: "srv__echo".into(),
            description: "echoes".into(),
            parameters: serde_json::json!({"type": "object"}),
        };
        let both = member.clone().with(vec![extra.clone()]);
        assert_eq!(both.list.len(), member.list.len() + 1);
        assert_eq!(both.tokens, member.tokens + tool_tokens(&extra));
        assert_eq!(
            Toolset::of(Offer::Operator(CallerKind::Member)).list.len(),
            member.list.len(),
            "the shared list is unchanged"
        );
    }
}
