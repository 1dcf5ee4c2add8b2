//! The integration suite: one binary, driving the daemon through its public faces.

#[path = "../support/mod.rs"]
mod support;

mod acp;
mod admin;
mod admin_browser;
mod admin_forms;
mod approvals;
mod ask;
mod automations;
mod backup;
mod chat;
mod cli;
mod daemon;
mod discord;
mod evolve;
mod fleet;
mod fuzz;
mod hosts;
mod images;
mod instance_chat;
mod instances;
mod jobs;
mod live;
mod mcp;
mod mentions;
mod runtimes;
mod secrets;
mod skills;
mod telegram;
mod turns;
mod usage;
mod voice;
mod workstation;
