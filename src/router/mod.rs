//! The router: inbound message -> access check -> its chat's ordered queue -> command or
//! (agent, conversation) -> turn.
//!
//! Each chat is served by one worker task at a time, in arrival order (the worker ends when
//! its queue is empty, so idle chats cost no memory), so "create an agent"
//! followed by "/use it" does what it says; different chats run in parallel, each with a bounded
//! queue. Only `/stop`, `/status`, `/help` and `/start` answer at once, ahead of the queue. Every
//! free-text message produces exactly one turn-ending outbound message (reply, failure or
//! cancellation), which channels may rely on. The router never touches a platform: it sees
//! channels only through the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{Outcome, Progress, Runner, Turn};
use crate::channel::{Hub, Inbound, Outbound, Receipt};
use crate::domain::{ActorRole, Caller, ChatRef, OPERATOR, Role, SESSION_COMMANDS, split_mention};
use crate::ops::{Invocation, Ops, ProgressSink, split_command};
use crate::store::{NewActivity, NewMessage, Store};

mod access;
mod admission;
mod interrupted;
mod secret_input;
mod uploads;

pub use access::{AccessRules, Decision, PAIRING_TTL_MS, platform_of};

/// Messages one chat may have waiting before new ones are turned away.
const QUEUE_DEPTH: usize = 16;
/// How long `/secret NAME` waits for the value as the next message.
const SECRET_PROMPT_TTL: Duration = Duration::from_secs(300);
/// Commands answered at once, ahead of the chat's queue.
const IMMEDIATE: [&str; 4] = ["stop", "status", "help", "start"];

struct Job {
    message: Inbound,
    caller: Caller,
    /// Set for messages the daemon itself sends to an agent (a background job's result).
    agent: Option<String>,
    /// Told how the turn ended (automations record it in their history).
    done: Option<oneshot::Sender<TurnResult>>,
}

/// How a turn ended, for whoever started it: success and a one-line summary.
pub type TurnResult = (bool, String);

type RunningSlot = Arc<Mutex<Option<CancellationToken>>>;

struct Worker {
    tx: mpsc::Sender<Job>,
    /// The running turn's token, so `/stop` can cancel it.
    running: RunningSlot,
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
    workers: Mutex<HashMap<ChatRef, Worker>>,
    /// Chats whose next message is the value of this secret (`/secret NAME` without a value).
    pending_secrets: Mutex<HashMap<ChatRef, (String, Instant)>>,
    /// Access rules by platform; a platform without rules admits nobody.
    access: RwLock<HashMap<String, AccessRules>>,
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
                pending_secrets: Mutex::new(HashMap::new()),
                access: RwLock::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// Sets the access rules of a platform (`telegram`, `discord`).
    pub fn set_access(&self, platform: &str, rules: AccessRules) {
        let mut access = self.inner.access.write().unwrap_or_else(|e| e.into_inner());
        access.insert(platform.to_string(), rules);
    }

    /// Handles inbound messages until the sender side closes, then lets queued work finish.
    pub async fn serve(&self, mut inbound: mpsc::Receiver<Inbound>) {
        while let Some(message) = inbound.recv().await {
            self.handle(message).await;
        }
        self.drain().await;
    }

    /// Waits until every queued message has been handled and answered.
    pub async fn drain(&self) {
        self.workers().clear();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Cancels every running turn (used when a shutdown deadline passes).
    pub fn cancel_all(&self) {
        for worker in self.workers().values() {
            cancel(&worker.running);
        }
    }

    /// Messages waiting or running, over all chats.
    pub fn queue_depth(&self) -> usize {
        self.workers()
            .values()
            .map(|w| w.tx.max_capacity() - w.tx.capacity())
            .sum()
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<ChatRef, Worker>> {
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one inbound message: admits it, answers an immediate command, or queues it in
    /// its chat. Failures are reported to the chat and logged; they never stop the router.
    pub async fn handle(&self, mut message: Inbound) {
        let receipt = message.receipt.take();
        let receipt = receipt.as_ref();
        let caller = match self.admit(&message).await {
            Decision::Admit(caller) => caller,
            Decision::Pair => {
                let reply = self.pairing_reply(&message).await;
                self.answer(&message.chat, receipt, Some(reply)).await;
                return;
            }
            Decision::Ignore(why) => {
                self.record(NewActivity {
                    kind: "message.rejected".into(),
                    actor: format!("{}:{}", message.chat.channel, message.sender_id),
                    role: Some(ActorRole::User),
                    summary: format!(
                        "message from {} in {} was not admitted: {why}",
                        message.sender_name, message.chat
                    ),
                    ..NewActivity::default()
                });
                self.answer(&message.chat, receipt, None).await;
                return;
            }
        };
        // Secret values are taken here, before anything is stored, queued or shown to a model.
        // The message that carried a value is taken out of the chat where the platform allows.
        let secret = if let Some(("secret", rest)) = split_command(&message.text) {
            let reply = self.secret_command(&message.chat, &caller, rest).await;
            Some((reply, rest.split_whitespace().nth(1).is_some()))
        } else if split_command(&message.text).is_none()
            && let Some(name) = self.take_pending_secret(&message.chat)
        {
            let reply = self
                .store_secret(&message.chat, &caller, &name, message.text.trim())
                .await;
            Some((reply, true))
        } else {
            None
        };
        if let Some((reply, carried_value)) = secret {
            let retract = message
                .message_id
                .clone()
                .map(Outbound::Retract)
                .filter(|_| carried_value);
            let parts = [Some(reply), retract].into_iter().flatten().collect();
            self.inner
                .hub
                .answer_all(&message.chat, receipt, parts)
                .await;
            return;
        }
        if let Some((command, rest)) = split_command(&message.text)
            && IMMEDIATE.contains(&command)
        {
            let reply = self.command(&message.chat, &caller, command, rest).await;
            self.answer(&message.chat, receipt, reply).await;
            return;
        }
        let chat = message.chat.clone();
        let is_turn = split_command(&message.text).is_none();
        message.receipt = receipt.cloned();
        let job = Job {
            message,
            caller,
            agent: None,
            done: None,
        };
        if let Err(receipt) = self.enqueue(job) {
            let reason = format!(
                "I'm busy with {QUEUE_DEPTH} waiting messages here; send this again in a moment."
            );
            let reply = if is_turn {
                Outbound::Failed(reason)
            } else {
                Outbound::Notice(reason)
            };
            self.answer(&chat, receipt.as_ref(), Some(reply)).await;
        }
    }

    /// Delivers an answer to a message and settles its receipt.
    async fn answer(&self, chat: &ChatRef, receipt: Option<&Receipt>, reply: Option<Outbound>) {
        self.inner.hub.answer(chat, receipt, reply).await;
    }

    /// Puts the job in its chat's queue, starting the chat's worker when needed.
    /// Fails (returning the message's receipt) when the chat's queue is full.
    fn enqueue(&self, job: Job) -> Result<(), Option<Receipt>> {
        let refused = |e: mpsc::error::TrySendError<Job>| match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                job.message.receipt
            }
        };
        let mut workers = self.workers();
        if let Some(worker) = workers.get(&job.message.chat) {
            return worker.tx.try_send(job).map_err(refused);
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let running: RunningSlot = Arc::new(Mutex::new(None));
        let chat = job.message.chat.clone();
        tx.try_send(job).map_err(refused)?;
        workers.insert(
            chat.clone(),
            Worker {
                tx,
                running: running.clone(),
            },
        );
        let router = self.clone();
        self.inner
            .tasks
            .spawn(async move { router.work(chat, rx, running).await });
        Ok(())
    }

    /// A chat's worker: handles its messages one at a time, in order.
    async fn work(self, chat: ChatRef, mut rx: mpsc::Receiver<Job>, running: RunningSlot) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing waits: leave, so an idle chat costs nothing. Messages are queued
                    // under the same lock, so none can slip in between the look and the exit.
                    let mut workers = self.workers();
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            if workers
                                .get(&chat)
                                .is_some_and(|w| Arc::ptr_eq(&w.running, &running))
                            {
                                workers.remove(&chat);
                            }
                            return;
                        }
                    }
                }
            };
            let mut job = job;
            let receipt = job.message.receipt.take();
            if let Some((command, rest)) = split_command(&job.message.text) {
                let reply = self.command(&chat, &job.caller, command, rest).await;
                self.answer(&chat, receipt.as_ref(), reply).await;
                continue;
            }
            let token = CancellationToken::new();
            *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
            let done = job.done.take();
            let outcome = self.turn(job, token, receipt.clone()).await;
            *running.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let result = match outcome {
                Ok(result) => result,
                Err(reason) => {
                    let reply = Outbound::Failed(reason.clone());
                    self.answer(&chat, receipt.as_ref(), Some(reply)).await;
                    (false, reason)
                }
            };
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
    }

    async fn command(
        &self,
        chat: &ChatRef,
        caller: &Caller,
        command: &str,
        rest: &str,
    ) -> Option<Outbound> {
        let (hub, status_chat) = (self.inner.hub.clone(), chat.clone());
        let sink = ProgressSink(Arc::new(move |key, text| {
            let (hub, chat) = (hub.clone(), status_chat.clone());
            tokio::spawn(async move { hub.deliver(&chat, Outbound::Status { key, text }).await });
        }));
        let inv = Invocation {
            caller: caller.clone(),
            chat: Some(chat.clone()),
            conversation_id: None,
            via_agent: None,
            progress: Some(sink),
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
                        role: Some(caller.role()),
                        summary: format!("fresh conversation in {chat}"),
                        ..NewActivity::default()
                    });
                    Outbound::Notice("Started a fresh conversation.".into())
                }
                Err(e) => Outbound::Notice(format!("Could not start a fresh conversation: {e}")),
            }),
            "stop" => {
                let running = self.workers().get(chat).is_some_and(|w| cancel(&w.running));
                (!running).then(|| Outbound::Notice("Nothing is running.".into()))
            }
            _ => match Ops::parse_command(&format!("/{command} {rest}")) {
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

    /// Picks the agent, stores the message, and runs the turn. An error is for the user.
    async fn turn(
        &self,
        job: Job,
        cancel: CancellationToken,
        receipt: Option<Receipt>,
    ) -> Result<TurnResult, String> {
        let store = &self.inner.store;
        let mut job = job;
        let attachments = std::mem::take(&mut job.message.attachments);
        let message = &job.message;
        let (agent, mut text) = match (&job.agent, split_mention(&message.text)) {
            (Some(agent), _) => (agent.clone(), message.text.clone()),
            (None, mention) => self.pick_agent(message, mention).await?,
        };
        if !attachments.is_empty() {
            let notes = self
                .take_uploads(&message.chat, &job.caller, &agent, attachments)
                .await;
            text = [text.trim().to_string(), notes.join("\n")]
                .join("\n")
                .trim()
                .to_string();
        }
        let conversation = store
            .open_conversation(&message.chat, &agent)
            .await
            .map_err(|e| format!("could not open the conversation: {e}"))?;
        store
            .append_message(conversation.id, Role::User, &NewMessage::text(text.clone()))
            .await
            .map_err(|e| format!("could not store the message: {e}"))?;
        self.record(NewActivity {
            kind: "message.in".into(),
            actor: job.caller.label.clone(),
            role: Some(job.caller.role()),
            agent: Some(agent.clone()),
            instance: None,
            conversation_id: Some(conversation.id),
            summary: text.chars().take(160).collect(),
            detail: Some(json!({ "chat": message.chat.to_string(), "from": message.sender_name })),
        });
        let turn = Turn {
            conversation,
            caller: job.caller,
            cancel,
        };
        Ok(self.run_turn(turn, receipt).await)
    }

    /// The agent a message is for: a leading `@mention` of a known agent, else the chat's binding,
    /// else Operator. Returns the agent and the text without the mention.
    async fn pick_agent(
        &self,
        message: &Inbound,
        mention: Option<(String, &str)>,
    ) -> Result<(String, String), String> {
        match mention {
            Some((name, rest)) if name == OPERATOR => Ok((OPERATOR.to_string(), rest.to_string())),
            Some((name, rest)) => match self.inner.store.agent(&name).await {
                Ok(agent) => Ok((agent.name, rest.to_string())),
                Err(_) => Ok((self.bound_agent(&message.chat).await?, message.text.clone())),
            },
            None => Ok((self.bound_agent(&message.chat).await?, message.text.clone())),
        }
    }

    /// Queues a message from the daemon itself to `agent` in `chat`, as a turn like any other
    /// (used to hand a background job's result back to the agent that started it).
    /// Returns a receiver told how the turn ended, or `None` when the chat's queue is full.
    pub async fn inject(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> Option<oneshot::Receiver<TurnResult>> {
        let message = Inbound::direct(chat.clone(), "system", caller.label.clone(), text);
        let (done, result) = oneshot::channel();
        let job = Job {
            message,
            caller,
            agent: Some(agent),
            done: Some(done),
        };
        if self.enqueue(job).is_err() {
            let reason =
                "work from the daemon could not be queued: this chat's queue is full".to_string();
            self.inner
                .hub
                .deliver(&chat, Outbound::Notice(reason))
                .await;
            return None;
        }
        Some(result)
    }

    /// The hub the router delivers through.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The chat's binding, else its bot's default agent, else Operator (one store read).
    async fn bound_agent(&self, chat: &ChatRef) -> Result<String, String> {
        let agent = self
            .inner
            .store
            .agent_for(chat)
            .await
            .map_err(|e| e.to_string())?;
        Ok(agent.unwrap_or_else(|| OPERATOR.to_string()))
    }

    async fn run_turn(&self, turn: Turn, receipt: Option<Receipt>) -> TurnResult {
        let chat = turn.conversation.chat.clone();
        let hub = self.inner.hub.clone();
        // Progress goes through its own ordered queue so it never overtakes the reply.
        // The final message carries the receipt of the message it answers.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(Outbound, Option<Receipt>)>();
        let delivery = {
            let chat = chat.clone();
            tokio::spawn(async move {
                while let Some((message, receipt)) = out_rx.recv().await {
                    match receipt {
                        Some(receipt) => hub.answer(&chat, Some(&receipt), Some(message)).await,
                        None => hub.deliver(&chat, message).await,
                    }
                }
            })
        };
        let progress_tx = out_tx.clone();
        let progress = move |p: Progress| {
            let message = match p {
                Progress::Thinking => Outbound::Typing,
                Progress::Tool(name) => Outbound::Progress(format!("running {name}…")),
                Progress::Status { key, text } => Outbound::Status { key, text },
            };
            let _ = progress_tx.send((message, None));
        };
        let conversation_id = turn.conversation.id;
        let agent = turn.conversation.agent.clone();
        let caller = turn.caller.label.clone();
        let caller_role = turn.caller.role();
        let outcome = self.inner.runner.run_turn(turn, &progress).await;
        // Every ending leaves an assistant message, so an unanswered conversation after a
        // restart can only be a turn that a crash cut short.
        let ending = match &outcome {
            Outcome::Reply(_) => None,
            Outcome::Failed(reason) => Some(format!("[this turn failed: {reason}]")),
            Outcome::Cancelled => Some("[this turn was cancelled]".to_string()),
        };
        if let Some(note) = ending
            && let Err(e) = self
                .inner
                .store
                .append_message(conversation_id, Role::Assistant, &NewMessage::text(note))
                .await
        {
            tracing::error!("cannot record how a turn ended: {e}");
        }
        let result = match &outcome {
            Outcome::Reply(text) => (
                true,
                text.lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
            ),
            Outcome::Failed(reason) => (false, reason.clone()),
            Outcome::Cancelled => (false, "cancelled".to_string()),
        };
        let message = match outcome {
            Outcome::Reply(text) => Outbound::Reply(text),
            Outcome::Failed(reason) => {
                self.record(NewActivity {
                    kind: "turn.failed".into(),
                    actor: agent.clone(),
                    role: Some(ActorRole::Agent),
                    agent: Some(agent),
                    instance: None,
                    conversation_id: Some(conversation_id),
                    summary: reason.clone(),
                    detail: None,
                });
                Outbound::Failed(reason)
            }
            Outcome::Cancelled => {
                self.record(NewActivity {
                    kind: "turn.cancelled".into(),
                    actor: caller,
                    role: Some(caller_role),
                    agent: Some(agent),
                    instance: None,
                    conversation_id: Some(conversation_id),
                    summary: "turn cancelled".into(),
                    detail: None,
                });
                Outbound::Cancelled
            }
        };
        let _ = out_tx.send((message, receipt));
        drop(out_tx);
        drop(progress);
        let _ = delivery.await;
        result
    }

    fn record(&self, entry: NewActivity) {
        self.inner.store.record(entry);
    }
}

/// Cancels the running turn in the slot; returns whether one was running.
fn cancel(slot: &RunningSlot) -> bool {
    match slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(token) => {
            token.cancel();
            true
        }
        None => false,
    }
}
