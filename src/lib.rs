//! `operator`: a daemon that turns Telegram and Discord into the control room for a fleet of AI
//! agents. See ARCHITECTURE.md for the map of the modules and the rules between them.

pub mod agent;
pub mod app;
pub mod backup;
pub mod channel;
pub mod check;
pub mod config;
pub mod domain;
pub mod http;
pub mod instance;
pub mod keys;
pub mod logging;
pub mod mcp;
pub mod media;
pub mod memory;
pub mod notify;
pub mod ops;
pub mod router;
pub mod scheduler;
pub mod secrets;
pub mod skills;
pub mod store;
pub mod usage;
