//! Each chat's queue of waiting messages, and the rules by which waiting messages join a turn.
//!
//! The queue is unbounded on purpose: a message that reached the daemon is never turned away
//! (durable channels have already stored it, and Telegram splits a long paste into several
//! messages, so bursts are normal). A chat has an entry here exactly while its worker task runs,
//! so an idle chat costs nothing. Everything is under one lock, so a message can never slip in
//! between a worker's last look and its exit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::TurnResult;
use crate::channel::Inbound;
use crate::domain::{Caller, ChatRef, split_mention};
use crate::ops::split_command;

/// One message waiting in a chat.
pub(super) struct Job {
    pub message: Inbound,
    pub caller: Caller,
    /// Set for messages the daemon itself sends to an agent (a background job's result).
    pub agent: Option<String>,
    /// Told how the turn ended (automations record it in their history).
    pub done: Option<oneshot::Sender<TurnResult>>,
    /// A person wrote it: its `@file` mentions are looked up (the daemon's own messages, which
    /// may quote what an agent said, are taken as they are).
    pub mentions: bool,
}

impl Job {
    /// Whether this is a command rather than something for an agent.
    pub fn is_command(&self) -> bool {
        split_command(&self.message.text).is_some()
    }

    /// What other messages must share to join the turn this one starts; `None` for the
    /// daemon's own work, which nothing joins.
    pub fn join_key(&self) -> Option<JoinKey> {
        self.agent.is_none().then(|| JoinKey {
            caller: self.caller.clone(),
            sender_id: self.message.sender_id.clone(),
        })
    }

    /// Whether this message may be answered by the turn of `key` with `agent`: free text from
    /// the same person, for the same agent (no `@mention` of another), never the daemon's own
    /// work. A turn runs with its caller's authority, so another person's message never joins.
    pub fn joins(&self, key: &JoinKey, agent: &str) -> bool {
        if self.agent.is_some() || self.is_command() {
            return false;
        }
        if self.caller != key.caller || self.message.sender_id != key.sender_id {
            return false;
        }
        match split_mention(&self.message.text) {
            Some((name, _)) => name == agent,
            None => true,
        }
    }
}

/// Who started a turn, which a joining message must match.
#[derive(Clone)]
pub(super) struct JoinKey {
    caller: Caller,
    sender_id: String,
}

struct ChatQueue {
    jobs: VecDeque<Job>,
    /// The running turn's token, so `/stop` can cancel it.
    running: Option<CancellationToken>,
}

/// The waiting messages of every chat with a running worker.
#[derive(Default)]
pub(super) struct Queues {
    chats: Mutex<HashMap<ChatRef, ChatQueue>>,
}

impl Queues {
    fn lock(&self) -> MutexGuard<'_, HashMap<ChatRef, ChatQueue>> {
        self.chats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a job at the back of its chat's queue. Returns true when the chat had no worker,
    /// so the caller must start one.
    pub fn push(&self, job: Job) -> bool {
        let mut chats = self.lock();
        let chat = job.message.chat.clone();
        let fresh = !chats.contains_key(&chat);
        // Room for one: a chat usually has a single message waiting, and a Job is 260 bytes
        // (a deque's first growth makes room for four).
        let queue = chats.entry(chat).or_insert_with(|| ChatQueue {
            jobs: VecDeque::with_capacity(1),
            running: None,
        });
        queue.jobs.push_back(job);
        fresh
    }

    /// The chat's next job; `None` ends the worker (its entry is removed under the same lock).
    pub fn next(&self, chat: &ChatRef) -> Option<Job> {
        let mut chats = self.lock();
        let queue = chats.get_mut(chat)?;
        match queue.jobs.pop_front() {
            Some(job) => Some(job),
            None => {
                chats.remove(chat);
                None
            }
        }
    }

    /// Takes the jobs at the front of the chat's queue that may join the turn of `key`,
    /// stopping at the first that may not (order is kept).
    pub fn take_joining(&self, chat: &ChatRef, key: &JoinKey, agent: &str) -> Vec<Job> {
        let mut chats = self.lock();
        let Some(queue) = chats.get_mut(chat) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        while queue.jobs.front().is_some_and(|j| j.joins(key, agent)) {
            taken.extend(queue.jobs.pop_front());
        }
        taken
    }

    /// Records (or clears) the chat's running turn.
    pub fn set_running(&self, chat: &ChatRef, token: Option<CancellationToken>) {
        if let Some(queue) = self.lock().get_mut(chat) {
            queue.running = token;
        }
    }

    /// Cancels the chat's running turn; returns whether one was running.
    pub fn cancel(&self, chat: &ChatRef) -> bool {
        match self.lock().get(chat).and_then(|q| q.running.as_ref()) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    pub fn cancel_all(&self) {
        for queue in self.lock().values() {
            if let Some(token) = &queue.running {
                token.cancel();
            }
        }
    }

    /// Messages waiting or running, over all chats.
    pub fn depth(&self) -> usize {
        self.lock()
            .values()
            .map(|q| q.jobs.len() + usize::from(q.running.is_some()))
            .sum()
    }
}
