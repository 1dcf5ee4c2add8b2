//! The turns operations need (a skill test, an ask, an evaluation, the chat side of approvals),
//! behind a trait the app implements with the router.

use crate::domain::{Caller, ChatRef};

/// Runs one turn of `agent` in `chat` and reports how it ended. The app implements it with the
/// router, so operations can use a turn without knowing the agent loop.
pub trait TurnRunner: Send + Sync {
    fn run_turn(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> crate::agent::llm::BoxFuture<'static, (bool, String)>;
    /// Like `run_turn`, for a person's own message (the admin page, `/api/chat`): its
    /// `@file` mentions are looked up for the agent.
    fn person_turn(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> crate::agent::llm::BoxFuture<'static, (bool, String)>;
    /// Delivers a file to a chat (an agent's `send_file`).
    fn deliver_file(
        &self,
        chat: ChatRef,
        name: String,
        bytes: Vec<u8>,
    ) -> crate::agent::llm::BoxFuture<'static, Result<(), String>>;
    /// Shows a request for an owner's yes in a chat, with buttons where the chat has them.
    /// Fails when the chat cannot show it (a chat of an automation that has no channel).
    fn ask_approval(
        &self,
        chat: ChatRef,
        code: String,
        text: String,
    ) -> crate::agent::llm::BoxFuture<'static, Result<(), String>>;
    /// Says in the chat how a request was decided (editing the request where possible).
    fn approval_decided(
        &self,
        chat: ChatRef,
        code: String,
        text: String,
    ) -> crate::agent::llm::BoxFuture<'static, ()>;
}
