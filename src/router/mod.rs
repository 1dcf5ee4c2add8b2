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

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::llm::BoxFuture;
use crate::agent::{Outcome, Progress, Runner, Turn};
use crate::channel::{Hub, Inbound, Outbound, Receipt};
use crate::config::QueueMode;
use crate::domain::{ActorRole, Caller, ChatRef, IMMEDIATE_COMMANDS, OPERATOR, Role};
use crate::ops::{Ops, split_command};
use crate::store::{NewActivity, NewMessage, Store};

mod access;
mod admission;
mod commands;
mod export;
mod interrupted;
mod mentions;
mod queue;
mod secret_input;
mod steer;
mod uploads;

pub use access::{AccessRules, Decision, PAIRING_TTL_MS, platform_of};
use queue::{Job, Queues};
use steer::{Receipts, Started};

/// How long `/secret NAME` waits for the value as the next message.
const SECRET_PROMPT_TTL: Duration = Duration::from_secs(300);

/// How a turn ended, for whoever started it: success and a one-line summary.
pub type TurnResult = (bool, String);

/// Takes a backup now (`/backup`): what to tell the owner, or why it failed.
pub type BackupRunner = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ops: Ops,
    runner: Runner,
    hub: Hub,
    queue_mode: QueueMode,
    queues: Queues,
    /// Chats whose next message is the value of this secret (`/secret NAME` without a value).
    pending_secrets: Mutex<HashMap<ChatRef, (String, Instant)>>,
    /// Access rules by platform; a platform without rules admits nobody.
    access: RwLock<HashMap<String, AccessRules>>,
    tasks: TaskTracker,
    /// What `/backup` runs; set by the app.
    backups: std::sync::OnceLock<BackupRunner>,
    /// Voice notes in, spoken replies out; set by the app when `[speech]` is configured.
    speech: std::sync::OnceLock<Arc<crate::media::speech::Speech>>,
    /// Slots for turns running at once (`[operator] max_turns`); unset: no limit.
    turn_slots: std::sync::OnceLock<Arc<tokio::sync::Semaphore>>,
    /// Turns running now; when the last one ends, free memory is given back.
    running_turns: std::sync::atomic::AtomicUsize,
}

impl Router {
    pub fn new(store: Store, ops: Ops, runner: Runner, hub: Hub, queue_mode: QueueMode) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ops,
                runner,
                hub,
                queue_mode,
                queues: Queues::default(),
                pending_secrets: Mutex::new(HashMap::new()),
                access: RwLock::new(HashMap::new()),
                tasks: TaskTracker::new(),
                backups: std::sync::OnceLock::new(),
                speech: std::sync::OnceLock::new(),
                turn_slots: std::sync::OnceLock::new(),
                running_turns: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    /// Gives voice notes a speech API (called once by the app when `[speech]` is set).
    /// Caps the turns running at once (called once by the app); 0 picks eight per core.
    pub fn set_max_turns(&self, max: u32) -> usize {
        let slots = match max {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()) * 8,
            n => n as usize,
        }
        .max(if max == 0 { 8 } else { 1 });
        let _ = self
            .inner
            .turn_slots
            .set(Arc::new(tokio::sync::Semaphore::new(slots)));
        slots
    }

    pub fn set_speech(&self, speech: crate::media::speech::Speech) {
        let _ = self.inner.speech.set(Arc::new(speech));
    }

    /// Gives `/backup` a way to take a backup (called once by the app).
    pub fn set_backup_runner(&self, runner: BackupRunner) {
        let _ = self.inner.backups.set(runner);
    }

    /// Sets the access rules of a platform (`telegram`, `discord`).
    pub fn set_access(&self, platform: &str, rules: AccessRules) {
        let mut access = self.inner.access.write().unwrap_or_else(|e| e.into_inner());
        access.insert(platform.to_string(), rules);
    }

    /// Handles inbound messages until the sender side closes or `stop` fires, then lets queued
    /// work finish. Stopping does not wait for every sender to go away: bots connected at
    /// runtime keep one, and an idle daemon must stop at once. Whatever a durable channel had
    /// handed over but the router had not yet taken is still stored and is handled after the
    /// restart.
    pub async fn serve(&self, mut inbound: mpsc::Receiver<Inbound>, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                message = inbound.recv() => match message {
                    Some(message) => self.handle(message).await,
                    None => break,
                },
                () = stop.cancelled() => break,
            }
        }
        self.drain().await;
    }

    /// Waits until every queued message has been handled and answered.
    pub async fn drain(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Cancels every running turn (used when a shutdown deadline passes).
    pub fn cancel_all(&self) {
        self.inner.queues.cancel_all();
    }

    /// Messages waiting or running, over all chats.
    pub fn queue_depth(&self) -> usize {
        self.inner.queues.depth()
    }

    /// Handles one inbound message: admits it, answers an immediate command, or queues it in
    /// its chat. Failures are reported to the chat and logged; they never stop the router.
    /// Nothing is ever turned away for being one too many: the chat's queue has no limit.
    pub async fn handle(&self, mut message: Inbound) {
        let receipt = message.receipt.take();
        let receipts = receipt.as_slice();
        let caller = match self.admit(&message).await {
            Decision::Admit(caller) => caller,
            Decision::Pair => {
                let reply = self.pairing_reply(&message).await;
                self.answer(&message.chat, receipts, Some(reply)).await;
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
                self.answer(&message.chat, receipts, None).await;
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
                .answer_all(&message.chat, receipts, parts)
                .await;
            return;
        }
        if let Some((command, rest)) = split_command(&message.text)
            && IMMEDIATE_COMMANDS.contains(&command)
        {
            let reply = self.command(&message.chat, &caller, command, rest).await;
            self.answer(&message.chat, receipts, reply).await;
            return;
        }
        message.receipt = receipt;
        self.enqueue(Job {
            message,
            caller,
            agent: None,
            done: None,
            mentions: true,
        });
    }

    async fn answer(&self, chat: &ChatRef, receipts: &[Receipt], reply: Option<Outbound>) {
        self.inner.hub.answer(chat, receipts, reply).await;
    }

    /// Puts the job in its chat's queue, starting the chat's worker when needed.
    fn enqueue(&self, job: Job) {
        let chat = job.message.chat.clone();
        if self.inner.queues.push(job) {
            let router = self.clone();
            self.inner
                .tasks
                .spawn(async move { router.work(chat).await });
        }
    }

    /// A chat's worker: handles its messages in order, a command or a turn at a time. A turn
    /// may answer several messages: in `collect` mode every waiting message that may join it
    /// starts it together; in `steer` mode later ones join at its next model call.
    async fn work(self, chat: ChatRef) {
        let queues = &self.inner.queues;
        while let Some(mut job) = queues.next(&chat) {
            let receipt = job.message.receipt.take();
            if let Some((command, rest)) = split_command(&job.message.text) {
                // Boxed like the turn: a worker waiting for a slot is about a kilobyte, where the
                // command's state inline made it four (10,000 chats waiting: 40 MB).
                Box::pin(async {
                    let reply = self.command(&chat, &job.caller, command, rest).await;
                    self.answer(&chat, receipt.as_slice(), reply).await;
                })
                .await;
                continue;
            }
            job.message.receipt = receipt;
            let token = CancellationToken::new();
            queues.set_running(&chat, Some(token.clone()));
            let done = job.done.take();
            // A turn waits for a slot; its chat's order holds, since this worker waits.
            let slot = match self.inner.turn_slots.get() {
                Some(slots) => slots.clone().acquire_owned().await.ok(),
                None => None,
            };
            let running = &self.inner.running_turns;
            running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            crate::memory::busy();
            // Boxed: a waiting worker is small, the turn's state exists only while it runs.
            let result = Box::pin(self.turn(job, token)).await;
            drop(slot);
            if running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                crate::memory::give_back();
            }
            queues.set_running(&chat, None);
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
    }

    /// Runs one turn in its chat: picks the agent, stores the messages it answers, runs it,
    /// and answers every one of them with its single ending.
    async fn turn(&self, first: Job, cancel: CancellationToken) -> TurnResult {
        let chat = first.message.chat.clone();
        let receipts = Receipts::default();
        match self.start_turn(first, cancel, &receipts).await {
            Ok(Started::Run(turn)) => self.run_turn(turn, receipts).await,
            Ok(Started::Answered(text)) => {
                // Handled again after a crash that came after the answer was stored: the stored
                // answer goes out, and the model is not asked twice.
                let summary = summary_line(&text);
                self.answer(&chat, &receipts.all(), Some(Outbound::Reply(text)))
                    .await;
                (true, summary)
            }
            Err(reason) => {
                let reply = Outbound::Failed(reason.clone());
                self.answer(&chat, &receipts.all(), Some(reply)).await;
                (false, reason)
            }
        }
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
    /// (used to hand a background job's result back to the agent that started it). Returns a
    /// receiver told how the turn ended.
    pub fn inject(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> oneshot::Receiver<TurnResult> {
        self.inject_job(chat, agent, caller, text, false)
    }

    /// Like [`Router::inject`], for what a person wrote outside the chat platforms (the admin
    /// page's chat, `/api/chat`): its `@file` mentions are looked up for `agent`.
    pub fn inject_person(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> oneshot::Receiver<TurnResult> {
        self.inject_job(chat, agent, caller, text, true)
    }

    fn inject_job(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
        mentions: bool,
    ) -> oneshot::Receiver<TurnResult> {
        let message = Inbound::direct(chat, "system", caller.label.clone(), text);
        let (done, result) = oneshot::channel();
        self.enqueue(Job {
            message,
            caller,
            agent: Some(agent),
            done: Some(done),
            mentions,
        });
        result
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

    async fn run_turn(&self, turn: Turn, receipts: Receipts) -> TurnResult {
        let chat = turn.conversation.chat.clone();
        let hub = self.inner.hub.clone();
        // Progress goes through its own ordered queue so it never overtakes the reply.
        // The final message carries the receipt of the message it answers.
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(Outbound, Vec<Receipt>)>();
        let delivery = {
            let chat = chat.clone();
            tokio::spawn(async move {
                let mut next = out_rx.recv().await;
                while let Some((mut message, receipts)) = next.take() {
                    // A growing reply that was overtaken by a newer text is not worth showing:
                    // while the channel was busy, only the latest text of a run counts.
                    while matches!(message, Outbound::Partial(_)) {
                        match out_rx.try_recv() {
                            Ok((newer @ Outbound::Partial(_), _)) => message = newer,
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    hub.answer(&chat, &receipts, Some(message)).await;
                    if next.is_none() {
                        next = out_rx.recv().await;
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
                Progress::Text(text) => Outbound::Partial(text),
            };
            let _ = progress_tx.send((message, Vec::new()));
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
            Outcome::Reply(text) => (true, summary_line(text)),
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
        let spoken = match &message {
            Outbound::Reply(text) if receipts.spoken() => Some(text.clone()),
            _ => None,
        };
        // Every message the turn took in (steered ones too) is settled by this one ending.
        let _ = out_tx.send((message, receipts.all()));
        // A voice note's reply is also spoken, after its text is on its way.
        if let Some(text) = spoken
            && let Some(speech) = self.inner.speech.get().filter(|s| s.speaks_replies())
        {
            match speech.speak(&text).await {
                Ok(audio) => {
                    let _ = out_tx.send((Outbound::Voice(audio), Vec::new()));
                }
                Err(e) => {
                    tracing::warn!("cannot speak a reply: {e}");
                    let note = format!("(The spoken reply could not be made: {e})");
                    let _ = out_tx.send((Outbound::Notice(note), Vec::new()));
                }
            }
        }
        drop(out_tx);
        drop(progress);
        let _ = delivery.await;
        result
    }

    fn record(&self, entry: NewActivity) {
        self.inner.store.record(entry);
    }
}

/// The first line of a reply, for whoever waits on the turn (an automation's history).
fn summary_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}
