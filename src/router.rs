//! The router: inbound message -> access check -> command or (agent, conversation) -> that
//! conversation's ordered queue.
//!
//! One conversation is processed by one worker task at a time, in arrival order; different
//! conversations run in parallel, each with a bounded queue. Every free-text message produces
//! exactly one turn-ending outbound message (reply, failure or cancellation), which channels may
//! rely on. The router never touches a platform: it sees channels only through the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{Outcome, Progress, Runner, Turn};
use crate::channel::{Hub, Inbound, Outbound, console};
use crate::domain::{Caller, ChatRef, OPERATOR, Role, SESSION_COMMANDS, split_mention};
use crate::ops::{Invocation, Ops, split_command};
use crate::store::{Conversation, NewActivity, NewMessage, Store};

/// Messages one conversation may have waiting before new ones are turned away.
const QUEUE_DEPTH: usize = 16;
/// A worker with nothing to do for this long ends; the next message starts a new one.
const IDLE: Duration = Duration::from_secs(300);

struct Job {
    conversation: Conversation,
    caller: Caller,
}

struct Worker {
    chat: ChatRef,
    tx: mpsc::Sender<Job>,
    /// The running turn's token, so `/stop` can cancel it.
    running: Arc<Mutex<Option<CancellationToken>>>,
}

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ops: Ops,
    runner: Runner,
    hub: Hub,
    workers: Mutex<HashMap<i64, Worker>>,
    tasks: TaskTracker,
}

impl Router {
    pub fn new(store: Store, ops: Ops, runner: Runner, hub: Hub) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ops,
                runner,
                hub,
                workers: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Handles inbound messages until the sender side closes, then lets queued work finish.
    pub async fn serve(&self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbound.recv().await {
            self.handle(message).await;
        }
        self.drain().await;
    }

    /// Waits until every queued turn has finished and been delivered.
    pub async fn drain(&self) {
        self.workers().clear();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Cancels every running turn (used when a shutdown deadline passes).
    pub fn cancel_all(&self) {
        for worker in self.workers().values() {
            if let Some(token) = worker
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                token.cancel();
            }
        }
    }

    /// Turns waiting or running, over all conversations.
    pub fn queue_depth(&self) -> usize {
        self.workers()
            .values()
            .map(|w| w.tx.max_capacity() - w.tx.capacity())
            .sum()
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Worker>> {
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one inbound message. Failures are reported to the chat and logged; they never
    /// stop the router.
    pub async fn handle(&self, message: Inbound) {
        let Some(caller) = self.admit(&message) else {
            self.record(NewActivity {
                kind: "message.rejected".into(),
                actor: format!("{}:{}", message.chat.channel, message.sender_id),
                summary: format!(
                    "message from {} in {} was not admitted",
                    message.sender_name, message.chat
                ),
                ..NewActivity::default()
            })
            .await;
            return;
        };
        if let Some((command, rest)) = split_command(&message.text) {
            let reply = self.command(&message.chat, &caller, command, rest).await;
            if let Some(reply) = reply {
                self.inner.hub.deliver(&message.chat, reply).await;
            }
            return;
        }
        if let Err(reason) = self.enqueue(&message, caller).await {
            self.inner
                .hub
                .deliver(&message.chat, Outbound::Failed(reason))
                .await;
        }
    }

    /// The access policy. It fails closed: a channel without a policy admits nobody.
    fn admit(&self, message: &Inbound) -> Option<Caller> {
        match message.chat.channel.as_str() {
            console::CHANNEL_ID => Some(Caller::owner("console")),
            _ => None,
        }
    }

    async fn command(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        command: &str,
        rest: &str,
    ) -> Option<Outbound> {
        let inv = Invocation {
            caller: caller.clone(),
            chat: Some(chat.clone()),
            conversation_id: None,
            via_agent: None,
        };
        match command {
            "start" => {
                let help = self.inner.ops.invoke(&inv, "help", json!({})).await;
                let help = help.map(|o| o.text).unwrap_or_default();
                Some(Outbound::Notice(format!(
                    "Hi, I'm Operator. I run your agents on this server.\n{help}"
                )))
            }
            "new" => Some(match self.inner.store.close_conversations(chat).await {
                Ok(_) => {
                    self.record(NewActivity {
                        kind: "conversation.new".into(),
                        actor: caller.label.clone(),
                        summary: format!("fresh conversation in {chat}"),
                        ..NewActivity::default()
                    })
                    .await;
                    Outbound::Notice("Started a fresh conversation.".into())
                }
                Err(e) => Outbound::Notice(format!("Could not start a fresh conversation: {e}")),
            }),
            "stop" => {
                let stopped = self.stop(chat);
                (stopped == 0).then(|| Outbound::Notice("Nothing is running.".into()))
            }
            _ => match crate::ops::Ops::parse_command(&format!("/{command} {rest}")) {
                Some((spec, args)) => Some(Outbound::Notice(
                    match self.inner.ops.invoke(&inv, spec.name, args).await {
                        Ok(out) => out.text,
                        Err(e) => format!("{e}"),
                    },
                )),
                None => {
                    let known = SESSION_COMMANDS.iter().any(|c| c.name == command);
                    debug_assert!(!known, "session command /{command} is not handled");
                    Some(Outbound::Notice(format!(
                        "I don't know /{command}. Send /help for the commands."
                    )))
                }
            },
        }
    }

    /// Cancels the running turns of the chat; returns how many were running.
    fn stop(&self, chat: &ChatRef) -> usize {
        let mut stopped = 0;
        for worker in self.workers().values().filter(|w| &w.chat == chat) {
            if let Some(token) = worker
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                token.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Picks the agent, stores the message, and queues the turn.
    async fn enqueue(&self, message: &Inbound, caller: Caller) -> Result<(), String> {
        let store = &self.inner.store;
        let (agent, text) = match split_mention(&message.text) {
            Some((name, rest)) if name == OPERATOR => (OPERATOR.to_string(), rest.to_string()),
            Some((name, rest)) => match store.agent(&name).await {
                Ok(agent) => (agent.name, rest.to_string()),
                Err(_) => (self.bound_agent(&message.chat).await?, message.text.clone()),
            },
            None => (self.bound_agent(&message.chat).await?, message.text.clone()),
        };
        let conversation = store
            .open_conversation(&message.chat, &agent)
            .await
            .map_err(|e| format!("could not open the conversation: {e}"))?;

        // Reserve the queue slot before storing, so a message is never stored and then dropped.
        let (tx, fresh) = self.worker_for(&conversation);
        let permit = tx.try_reserve().map_err(|_| {
            format!(
                "{agent} is busy with {QUEUE_DEPTH} waiting messages; send this again in a moment"
            )
        })?;
        if let Some((rx, running)) = fresh {
            let router = self.clone();
            let id = conversation.id;
            self.inner
                .tasks
                .spawn(async move { router.work(id, rx, running).await });
        }
        store
            .append_message(conversation.id, Role::User, &NewMessage::text(text.clone()))
            .await
            .map_err(|e| format!("could not store the message: {e}"))?;
        self.record(NewActivity {
            kind: "message.in".into(),
            actor: caller.label.clone(),
            agent: Some(agent.clone()),
            conversation_id: Some(conversation.id),
            summary: text.chars().take(160).collect(),
            detail: Some(json!({ "chat": message.chat.to_string(), "from": message.sender_name })),
        })
        .await;
        permit.send(Job {
            conversation,
            caller,
        });
        Ok(())
    }

    async fn bound_agent(&self, chat: &ChatRef) -> Result<String, String> {
        let bound = self
            .inner
            .store
            .binding(chat)
            .await
            .map_err(|e| e.to_string())?;
        Ok(bound.unwrap_or_else(|| OPERATOR.to_string()))
    }

    /// The conversation's queue; when a worker must be started, also its receiving end.
    #[allow(clippy::type_complexity)]
    fn worker_for(
        &self,
        conversation: &Conversation,
    ) -> (
        mpsc::Sender<Job>,
        Option<(mpsc::Receiver<Job>, Arc<Mutex<Option<CancellationToken>>>)>,
    ) {
        let mut workers = self.workers();
        if let Some(worker) = workers.get(&conversation.id) {
            return (worker.tx.clone(), None);
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let running = Arc::new(Mutex::new(None));
        workers.insert(
            conversation.id,
            Worker {
                chat: conversation.chat.clone(),
                tx: tx.clone(),
                running: running.clone(),
            },
        );
        (tx, Some((rx, running)))
    }

    /// A conversation's worker: runs its turns one at a time, in order.
    async fn work(
        self,
        id: i64,
        mut rx: mpsc::Receiver<Job>,
        running: Arc<Mutex<Option<CancellationToken>>>,
    ) {
        loop {
            let job = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    // Idle: leave, unless a message was queued or reserved meanwhile.
                    let mut workers = self.workers();
                    let idle = workers
                        .get(&id)
                        .is_none_or(|w| w.tx.capacity() == w.tx.max_capacity());
                    if idle {
                        workers.remove(&id);
                        return;
                    }
                    continue;
                }
            };
            let cancel = CancellationToken::new();
            *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(cancel.clone());
            self.run_job(job, cancel).await;
            *running.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    async fn run_job(&self, job: Job, cancel: CancellationToken) {
        let chat = job.conversation.chat.clone();
        let hub = self.inner.hub.clone();
        // Progress goes through its own ordered queue so it never overtakes the reply.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outbound>();
        let delivery = {
            let chat = chat.clone();
            tokio::spawn(async move {
                while let Some(message) = out_rx.recv().await {
                    hub.deliver(&chat, message).await;
                }
            })
        };
        let progress_tx = out_tx.clone();
        let progress = move |p: Progress| {
            let message = match p {
                Progress::Thinking => Outbound::Typing,
                Progress::Tool(name) => Outbound::Progress(format!("running {name}…")),
            };
            let _ = progress_tx.send(message);
        };
        let conversation_id = job.conversation.id;
        let agent = job.conversation.agent.clone();
        let turn = Turn {
            conversation: job.conversation,
            caller: job.caller.clone(),
            cancel,
        };
        let outcome = self.inner.runner.run_turn(turn, &progress).await;
        let message = match outcome {
            Outcome::Reply(text) => Outbound::Reply(text),
            Outcome::Failed(reason) => {
                self.record(NewActivity {
                    kind: "turn.failed".into(),
                    actor: agent.clone(),
                    agent: Some(agent),
                    conversation_id: Some(conversation_id),
                    summary: reason.clone(),
                    detail: None,
                })
                .await;
                Outbound::Failed(reason)
            }
            Outcome::Cancelled => {
                self.record(NewActivity {
                    kind: "turn.cancelled".into(),
                    actor: job.caller.label,
                    agent: Some(agent),
                    conversation_id: Some(conversation_id),
                    summary: "turn cancelled".into(),
                    detail: None,
                })
                .await;
                Outbound::Cancelled
            }
        };
        let _ = out_tx.send(message);
        drop(out_tx);
        drop(progress);
        let _ = delivery.await;
    }

    async fn record(&self, entry: NewActivity) {
        if let Err(e) = self.inner.store.record(entry).await {
            tracing::error!("cannot write the activity feed: {e}");
        }
    }
}
