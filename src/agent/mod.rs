//! The agent turn loop: history + persona + tools -> model -> tool calls -> ... -> final text.
//!
//! Outside `llm/` this module speaks only the project's own types. It acts on the world only
//! through the control surface (`ops`), and it never talks to a channel: progress goes to a
//! callback, and the reply is returned to the caller.

mod acp;
mod cli_lines;
mod context;
pub mod llm;
mod metering;
mod prompt;
pub mod runtime;
mod tools;
mod toolset;
mod turn;
mod vision;

use std::sync::Arc;

use crate::ops::Ops;
use crate::store::Store;

pub use context::estimate_tokens;
pub use llm::{LlmError, LlmProvider};
pub use prompt::OPERATOR_PERSONA;
pub use turn::{Outcome, Progress, Steering, Turn};

/// Limits a turn runs within.
#[derive(Clone)]
pub struct Limits {
    pub default_model: String,
    pub max_tokens: u32,
    pub max_steps: u32,
    pub context_tokens: u32,
    /// Prices and budgets: every model call is recorded, and none is made past a limit.
    pub meter: Arc<crate::usage::Meter>,
    /// The provider's name, for the records.
    pub provider: String,
}

/// Runs turns. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ops: Ops,
    llm: Option<Arc<dyn LlmProvider>>,
    limits: Limits,
    vision: vision::Vision,
}

impl Runner {
    pub fn new(store: Store, ops: Ops, llm: Option<Arc<dyn LlmProvider>>, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ops,
                llm,
                limits,
                vision: vision::Vision::default(),
            }),
        }
    }

    pub fn has_llm(&self) -> bool {
        self.inner.llm.is_some()
    }
}
