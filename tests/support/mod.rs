//! Test support: fakes of what cannot be reached from here (LLM vendors), speaking the real wire
//! format on 127.0.0.1, and helpers that drive the real `operator` binary.

#![allow(dead_code)]

pub mod browser;
pub mod claude;
pub mod discord;
pub mod docker;
pub mod engine;
pub mod inproc;
pub mod llm;
pub mod mcp;
pub mod process;
pub mod speech;
pub mod sshd;
pub mod telegram;

pub use llm::{FakeLlm, Vendor};
pub use process::{World, run_with_timeout};
