//! How the core's parts reach each other without knowing each other: automation runs, turns
//! that operations need, webhook prompts, `/backup`, and notices to the owners.

use std::sync::Arc;

use super::*;

/// Runs an automation's prompt as a turn of its agent in its chat (a chat of its own when it
/// was created outside one), and reports how the turn ended.
pub(super) struct AutomationSink {
    pub(super) router: Router,
    pub(super) meter: Arc<crate::usage::Meter>,
    pub(super) store: Store,
}

impl RunSink for AutomationSink {
    fn run(&self, automation: AutomationRecord, run_id: i64) -> BoxFuture<'static, (bool, String)> {
        let router = self.router.clone();
        let (meter, store) = (self.meter.clone(), self.store.clone());
        Box::pin(async move {
            let chat = automation
                .chat
                .clone()
                .unwrap_or_else(|| ChatRef::new("automation", &automation.name));
            // Past a spending limit the run is skipped, not started.
            if let Some(why) = meter.refusal(&store, &automation.agent).await {
                return (false, format!("skipped: budget — {why}"));
            }
            let caller = Caller::owner(format!("automation:{}", automation.name));
            let text = format!(
                "[automation {} — scheduled run {run_id}; report the result in a few lines]\n{}",
                automation.name, automation.prompt
            );
            router
                .inject(chat, automation.agent.clone(), caller, text)
                .await
                .unwrap_or((false, "the run was dropped before it ended".into()))
        })
    }
}

/// Operations' way to run a turn: through the router, like everything else.
pub(super) struct RouterTurns {
    pub(super) router: Router,
}

/// How an injected turn ended, or that it was dropped.
fn ended(
    done: tokio::sync::oneshot::Receiver<(bool, String)>,
) -> BoxFuture<'static, (bool, String)> {
    Box::pin(async move { done.await.unwrap_or((false, "the turn was dropped".into())) })
}

impl TurnRunner for RouterTurns {
    fn run_turn(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> BoxFuture<'static, (bool, String)> {
        ended(self.router.inject(chat, agent, caller, text))
    }

    fn person_turn(
        &self,
        chat: ChatRef,
        agent: String,
        caller: Caller,
        text: String,
    ) -> BoxFuture<'static, (bool, String)> {
        ended(self.router.inject_person(chat, agent, caller, text))
    }

    fn deliver_file(
        &self,
        chat: ChatRef,
        name: String,
        bytes: Vec<u8>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let hub = self.router.hub().clone();
        Box::pin(async move { hub.try_deliver(&chat, Outbound::File { name, bytes }).await })
    }

    fn ask_approval(
        &self,
        chat: ChatRef,
        code: String,
        text: String,
    ) -> BoxFuture<'static, Result<(), String>> {
        let hub = self.router.hub().clone();
        Box::pin(async move {
            hub.try_deliver(&chat, Outbound::Approval { code, text })
                .await
        })
    }

    fn approval_decided(
        &self,
        chat: ChatRef,
        code: String,
        text: String,
    ) -> BoxFuture<'static, ()> {
        let hub = self.router.hub().clone();
        Box::pin(async move { hub.deliver(&chat, Outbound::Decided { code, text }).await })
    }
}

/// Runs a webhook's filled prompt as a turn of its agent in its chat; does not wait for it.
pub(super) struct WebhookRunner {
    pub(super) router: Router,
}

impl WebhookSink for WebhookRunner {
    fn trigger(&self, hook: WebhookRecord, prompt: String) {
        let chat = hook
            .chat
            .clone()
            .unwrap_or_else(|| ChatRef::new("webhook", &hook.name));
        let caller = Caller::owner(format!("webhook:{}", hook.name));
        // The turn is queued; nobody waits for how it ends.
        drop(self.router.inject(chat, hook.agent.clone(), caller, prompt));
    }
}

/// `/backup`: a backup into the backup directory, now. (Set by `run` and `chat`, not `build`,
/// since a backup with workspaces builds a core of its own.)
pub(super) fn backup_runner(settings: &Settings, store: &Store) -> crate::router::BackupRunner {
    let (settings, store) = (settings.clone(), store.clone());
    Arc::new(move || {
        let (settings, store) = (settings.clone(), store.clone());
        Box::pin(async move { crate::backup::scheduled::now(&settings, &store, "/backup").await })
    })
}

/// Tells the owners something in their direct chats with each running Telegram bot (Discord
/// direct chats have ids of their own, so Discord owners read it in the activity feed).
pub(super) fn owners_told(settings: &Settings, hub: &Hub) -> impl Fn(String) + Send + Sync + use<> {
    let owners = settings.telegram.owners.clone();
    let hub = hub.clone();
    move |text: String| {
        let chats: Vec<ChatRef> = hub
            .ids()
            .into_iter()
            .filter(|id| id.starts_with("telegram:"))
            .flat_map(|id| {
                owners
                    .iter()
                    .map(move |o| ChatRef::new(id.clone(), o.to_string()))
            })
            .collect();
        let hub = hub.clone();
        tokio::spawn(async move {
            for chat in chats {
                hub.deliver(&chat, Outbound::Notice(text.clone())).await;
            }
        });
    }
}
