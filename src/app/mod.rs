//! The composition root: builds the store, the control surface, the model client, the router and
//! the channels, runs them, and shuts them down in order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::agent::llm::BoxFuture;
use crate::agent::{Limits, Runner, llm};
use crate::channel::console::Console;
use crate::channel::{Channel, Hub, Outbound};
use crate::config::{MissedRuns, Settings};
use crate::domain::{Caller, CallerKind, ChatRef};
use crate::http::{self, HttpState, WebhookSink};
use crate::instance::InstanceDefaults;
use crate::notify;
use crate::ops::{ApprovalPolicy, JobEvents, Ops, SystemInfo, TurnRunner};
use crate::router::Router;
use crate::scheduler::{MissedPolicy, RunSink, Scheduler};
use crate::secrets::{KeySource, MasterKey, Redactor};
use crate::store::{AutomationRecord, JobRecord, Store, WebhookRecord};

mod discord;
mod image;
pub use image::image_build;
mod sinks;

use sinks::{AutomationSink, RouterTurns, WebhookRunner, backup_runner, owners_told};
mod telegram;

/// How long running turns get to finish after a shutdown request before they are cancelled.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How often running background jobs are looked at.
const JOB_POLL: Duration = Duration::from_secs(2);
/// The least time between two progress updates of one job in its chat.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often instance statuses are compared with the engine.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

/// The daemon's parts, wired together. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub store: Store,
    pub ops: Ops,
    pub runner: Runner,
    pub router: Router,
    pub hub: Hub,
    pub scheduler: Arc<Scheduler>,
    /// Listeners of conversations started over HTTP.
    pub http_chat: Arc<crate::channel::http_chat::HttpChat>,
    /// Where backups are written.
    pub backups_dir: std::path::PathBuf,
}

/// Opens and migrates the store and wires the core. `channels` names the channels this process
/// will serve, for status reports.
pub async fn build(settings: &Settings, channels: Vec<String>) -> anyhow::Result<Core> {
    let store = Store::open_and_migrate(&settings.state_dir()).await?;
    let llm = llm::from_settings(&settings.llm)?;
    let info = SystemInfo {
        started: Instant::now(),
        llm: llm.as_ref().map(|l| l.describe()),
        channels,
    };
    let fleet =
        crate::instance::fleet_from_settings(&settings.docker, &settings.state_dir().join("run"))
            .map_err(|e| anyhow::anyhow!("config [[docker.hosts]]: {e}"))?;
    if let Some(recipe) = crate::instance::image::Recipe::from_settings(&settings.docker) {
        crate::instance::image::register(&recipe);
    }
    let defaults = InstanceDefaults::from_settings(&settings.docker);
    let master_key = Arc::new(load_master_key(&settings.state_dir(), &store).await?);
    let scheduler_wake = Arc::new(Notify::new());
    let approvals = ApprovalPolicy {
        require: settings.approvals.require.clone(),
        max_targets: settings.approvals.max_targets,
        timeout: Duration::from_secs(settings.approvals.timeout_secs),
    };
    let ops = Ops::with_approvals(
        store.clone(),
        info,
        Arc::new(fleet),
        defaults,
        master_key,
        scheduler_wake.clone(),
        approvals,
    );
    let meter = Arc::new(crate::usage::Meter::new(
        settings.llm.prices.clone(),
        crate::usage::Limits {
            daily_usd: settings.budget.daily_usd,
            monthly_usd: settings.budget.monthly_usd,
            agents: Default::default(),
        },
    ));
    meter.load(&store).await;
    ops.set_meter(meter.clone());
    ops.set_mcp_servers(settings.mcp.servers.clone());
    let limits_meter = meter.clone();
    let limits = Limits {
        default_model: settings.llm.model.clone(),
        max_tokens: settings.llm.max_tokens,
        max_steps: settings.operator.max_steps,
        context_tokens: settings.operator.context_tokens,
        meter,
        provider: "default".to_string(),
    };
    ops.load_placements().await?;
    let runner = Runner::new(store.clone(), ops.clone(), llm, limits);
    let hub = Hub::default();
    let http_chat = Arc::new(crate::channel::http_chat::HttpChat::default());
    hub.add(http_chat.clone());
    hub.add(Arc::new(crate::channel::quiet::Quiet::new(
        crate::ops::ASK_CHANNEL,
    )));
    let router = Router::new(
        store.clone(),
        ops.clone(),
        runner.clone(),
        hub.clone(),
        settings.operator.queue,
    );
    router.set_max_turns(settings.operator.max_turns);
    ops.set_turn_runner(Arc::new(RouterTurns {
        router: router.clone(),
    }));
    if let Some(speech) = crate::media::speech::Speech::from_settings(&settings.speech) {
        router.set_speech(speech);
    }
    let missed = match settings.scheduler.missed {
        MissedRuns::RunOnce => MissedPolicy::RunOnce,
        MissedRuns::Skip => MissedPolicy::Skip,
    };
    let sink = Arc::new(AutomationSink {
        router: router.clone(),
        meter: limits_meter.clone(),
        store: store.clone(),
    });
    let scheduler = Arc::new(Scheduler::new(store.clone(), sink, missed, scheduler_wake));
    Ok(Core {
        backups_dir: crate::backup::scheduled::directory(settings),
        store,
        ops,
        runner,
        router,
        hub,
        scheduler,
        http_chat,
    })
}

/// `operator skills import PATH`: reads a skill folder from disk and stores it as a new version.
pub async fn import_skill(settings: Settings, path: &std::path::Path) -> anyhow::Result<String> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.is_file() && (file_name.ends_with(".tar.gz") || file_name.ends_with(".tgz")) {
        let unpacked =
            std::env::temp_dir().join(format!("operator-skill-{:08x}", rand::random::<u32>()));
        let result = async {
            let folder = unpack_skill_archive(path, &unpacked)?;
            Box::pin(import_skill(settings, &folder)).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&unpacked);
        return result;
    }
    if !path.is_dir() {
        bail!(
            "{} is neither a skill folder nor a .tar.gz of one",
            path.display()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let skill_md = std::fs::read_to_string(path.join("SKILL.md"))
        .with_context(|| format!("reading {}", path.join("SKILL.md").display()))?;
    let mut files = std::collections::BTreeMap::new();
    for sub in ["scripts", "references", "assets"] {
        collect_files(path, &path.join(sub), &mut files)?;
    }
    let core = build(&settings, Vec::new()).await?;
    let author = format!("import:{}", path.display());
    let (version, new) = core
        .ops
        .import_skill(&name, skill_md, files, &author)
        .await?;
    core.store.close().await;
    let state = if new { "stored" } else { "unchanged" };
    Ok(format!(
        "skill {} version {} {state} ({} file(s))",
        version.name,
        version.version,
        version.files.len()
    ))
}

/// Unpacks a skill archive into `into` and returns the skill's folder: the archive's single
/// top-level folder, or (for an archive of the folder's contents) a folder named after the file.
/// The tar reader refuses entries that would land outside `into`.
fn unpack_skill_archive(
    archive: &std::path::Path,
    into: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    let file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let stem = archive
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_end_matches(".tar.gz")
                .trim_end_matches(".tgz")
                .to_string()
        })
        .unwrap_or_default();
    let target = into.join(&stem);
    std::fs::create_dir_all(&target)?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&target)
        .with_context(|| format!("unpacking {}", archive.display()))?;
    if target.join("SKILL.md").is_file() {
        return Ok(target);
    }
    let mut dirs = std::fs::read_dir(&target)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir());
    match (dirs.next(), dirs.next()) {
        (Some(only), None) if only.path().join("SKILL.md").is_file() => Ok(only.path()),
        _ => bail!(
            "{} holds no skill folder with a SKILL.md",
            archive.display()
        ),
    }
}

/// Every text file under `dir`, keyed by its path relative to `root`.
fn collect_files(
    root: &std::path::Path,
    dir: &std::path::Path,
    out: &mut std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{} is not a text file", path.display()))?;
            out.insert(relative, text);
        }
    }
    Ok(())
}

/// The admin listener's state for a core; `admin_token_hash` guards `/api/`.
pub fn http_state(core: &Core, admin_token_hash: Option<String>) -> HttpState {
    HttpState {
        store: core.store.clone(),
        ops: core.ops.clone(),
        admin_token_hash,
        webhooks: Arc::new(WebhookRunner {
            router: core.router.clone(),
        }),
        queue_depth: {
            let router = core.router.clone();
            Arc::new(move || router.queue_depth())
        },
        telegram: Default::default(),
        sessions: Default::default(),
        http_chat: core.http_chat.clone(),
        channels_started: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        backups_dir: core.backups_dir.clone(),
    }
}

/// The admin token's hash: from `[admin] token`, else generated at first start, printed once to
/// stderr, and kept only as a hash.
async fn admin_token_hash(settings: &Settings, store: &Store) -> anyhow::Result<String> {
    if !settings.admin.token.is_empty() {
        return Ok(http::api::token_hash(settings.admin.token.expose()));
    }
    if let Some(hash) = store.kv_get("admin_token_hash").await? {
        return Ok(hash);
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    let hash = http::api::token_hash(&token);
    store.kv_set("admin_token_hash", &hash).await?;
    eprintln!("admin token (shown once, stored only as a hash): {token}");
    Ok(hash)
}

/// Loads (or creates) the master key and registers every secret value with the redactor. A
/// secret that does not open is reported by name and stays locked; the rest work.
async fn load_master_key(state_dir: &std::path::Path, store: &Store) -> anyhow::Result<MasterKey> {
    let (key, source) = MasterKey::load_or_create(state_dir)?;
    if state_dir.join(crate::keys::PENDING_KEY).exists() {
        tracing::warn!(
            "a master key rotation was cut short; run `operator secrets rotate-key` again to finish it"
        );
    }
    if let KeySource::Created(path) = &source {
        tracing::info!(
            "created a new master key at {} (keep a copy: without it secrets are lost)",
            path.display()
        );
    }
    for secret in store.list_secrets().await? {
        match key.open(&secret.name, &secret.sealed, &secret.key_id) {
            Ok(value) => Redactor::global().set(&secret.name, &String::from_utf8_lossy(&value)),
            Err(e) => tracing::error!("{e}"),
        }
    }
    Ok(key)
}

/// Runs the daemon until `shutdown` completes: the admin listener on `listener`, the router, and
/// the configured channels.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener
        .local_addr()
        .context("reading the admin listener address")?;
    if !addr.ip().is_loopback() && settings.admin.token.is_empty() {
        bail!(
            "[admin] listen = {addr} is reachable from other machines, but [admin] token is empty; \
             set a token or listen on 127.0.0.1"
        );
    }
    let channels = [
        ("telegram", settings.telegram.enabled),
        ("discord", settings.discord.enabled),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name.to_string())
    .collect();
    let core = build(&settings, channels).await?;
    core.router
        .set_backup_runner(backup_runner(&settings, &core.store));
    let stop = CancellationToken::new();

    let admin_hash = admin_token_hash(&settings, &core.store).await?;
    let mut state = http_state(&core, Some(admin_hash));
    let intake = state.telegram.clone();
    // Not ready until the bots have started.
    let channels_started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    state.channels_started = channels_started.clone();
    let app = http::router(state);
    let http_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });

    let (inbound_tx, inbound_rx) = mpsc::channel(256);
    let router = core.router.clone();
    let router_stop = stop.clone();
    let serving = tokio::spawn(async move { router.serve(inbound_rx, router_stop).await });
    let bots =
        telegram::TelegramBots::start(&settings, &core, &intake, inbound_tx.clone(), &stop).await?;
    let discord = discord::DiscordBots::start(&settings, &core, inbound_tx.clone(), &stop).await?;
    core.ops.set_bot_connector(Arc::new(telegram::Connector {
        telegram: bots.clone(),
        discord: discord.clone(),
    }));
    channels_started.store(true, std::sync::atomic::Ordering::Release);
    // Requests for a yes that a stopped process left waiting will never run: say so.
    core.ops.expire_interrupted_approvals(&core.hub.ids()).await;
    let reconciling = tokio::spawn(reconcile_periodically(core.ops.clone(), stop.clone()));
    let watching = tokio::spawn(watch_jobs(core.clone(), stop.clone()));
    let scheduling = tokio::spawn(core.scheduler.clone().run(stop.clone()));
    let backing_up = tokio::spawn(crate::backup::scheduled::run(
        settings.clone(),
        core.store.clone(),
        owners_told(&settings, &core.hub),
        stop.clone(),
    ));
    tracing::info!(admin = %addr, llm = core.runner.has_llm(), "ready");
    let llm = if core.runner.has_llm() {
        "LLM configured"
    } else {
        "no LLM configured"
    };
    notify::notify(&format!("READY=1\nSTATUS=serving; admin on {addr}; {llm}"));
    // The pings go on while shutting down (systemd still watches) and end with the process.
    let pinging = notify::watchdog_interval().map(|every| tokio::spawn(ping_watchdog(every)));

    shutdown.await;
    tracing::info!("shutting down");
    notify::notify("STOPPING=1\nSTATUS=shutting down: finishing running turns");
    drop(inbound_tx);
    stop.cancel();
    let _ = reconciling.await;
    let _ = watching.await;
    // A backup being written is finished (the snapshot itself is one statement).
    let _ = tokio::time::timeout(DRAIN_DEADLINE, backing_up).await;
    // Automation runs in flight finish like any turn, within the same deadline.
    let _ = tokio::time::timeout(DRAIN_DEADLINE, scheduling).await;
    if tokio::time::timeout(DRAIN_DEADLINE, serving).await.is_err() {
        tracing::warn!("turns still running after {DRAIN_DEADLINE:?}; cancelling them");
        core.router.cancel_all();
    }
    // The answers of drained turns are in the outboxes; give them a moment to go out. MCP
    // servers started in instances are ended meanwhile.
    let mcp = tokio::time::timeout(DRAIN_DEADLINE, core.ops.mcp_shutdown());
    let _ = tokio::join!(bots.finish(), discord.finish(), mcp);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("admin listener failed: {e}"),
        Err(e) => tracing::error!("admin listener task failed: {e}"),
    }
    if let Some(pinging) = pinging {
        pinging.abort();
    }
    core.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Pings the systemd watchdog from the runtime's own timer: if the runtime wedges, the pings stop
/// and systemd restarts the service.
async fn ping_watchdog(every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        notify::notify("WATCHDOG=1");
    }
}

/// Compares instances with their Docker hosts at start and then every [`RECONCILE_EVERY`]. A host
/// that does not answer is logged and tried again next time; nothing else waits for it.
async fn reconcile_periodically(ops: Ops, stop: CancellationToken) {
    loop {
        match ops.reconcile_instances().await {
            Ok(fleet) => {
                if let Some(e) = fleet.unreachable {
                    tracing::warn!(
                        "Docker hosts not answering (their instances keep their last known state): {e}"
                    );
                }
                if !fleet.unknown.is_empty() {
                    tracing::warn!(containers = ?fleet.unknown, "containers labelled operator.managed are not in the database");
                }
            }
            Err(e) => tracing::error!("instance reconciliation failed: {e}"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}

/// Delivers job progress to the job's chat (at most every [`PROGRESS_EVERY`] per job) and hands
/// a finished job's report to the agent that started it, in the same chat.
struct ChatJobEvents {
    router: Router,
    last_progress: Mutex<HashMap<i64, Instant>>,
}

impl JobEvents for ChatJobEvents {
    fn progress(&self, job: &JobRecord, text: String) {
        let Some(chat) = job.chat.clone() else { return };
        {
            let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if last
                .get(&job.id)
                .is_some_and(|t| now.duration_since(*t) < PROGRESS_EVERY)
            {
                return;
            }
            last.insert(job.id, now);
        }
        let hub = self.router.hub().clone();
        let key = format!("job-{}", job.id);
        tokio::spawn(async move { hub.deliver(&chat, Outbound::Status { key, text }).await });
    }

    fn finished(&self, job: &JobRecord, report: String) {
        self.last_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        let Some(chat) = job.chat.clone() else {
            tracing::info!(
                job = job.id,
                "a background job without a chat ended: {report}"
            );
            return;
        };
        let caller = Caller {
            kind: if job.caller_is_owner {
                CallerKind::Owner
            } else {
                CallerKind::Member
            },
            label: job.caller.clone(),
        };
        // The turn is queued; nobody waits for how it ends.
        drop(self.router.inject(chat, job.agent.clone(), caller, report));
    }
}

/// Follows background jobs every [`JOB_POLL`] until `stop`.
async fn watch_jobs(core: Core, stop: CancellationToken) {
    let events = ChatJobEvents {
        router: core.router.clone(),
        last_progress: Mutex::new(HashMap::new()),
    };
    loop {
        if let Err(e) = core.ops.poll_jobs(&events).await {
            tracing::error!("following background jobs failed: {e}");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(JOB_POLL) => {}
        }
    }
}

/// `operator chat`: the console channel against the same state as the daemon. Returns at end of
/// input (or Ctrl-C with nothing running) once every queued turn has been answered.
pub async fn chat(settings: Settings) -> anyhow::Result<()> {
    let console = Arc::new(Console::new());
    let core = build(&settings, vec![console.id().to_string()]).await?;
    core.router
        .set_backup_runner(backup_runner(&settings, &core.store));
    core.hub.add(console.clone());
    core.router.report_interrupted(&core.hub.ids()).await;
    core.ops
        .expire_interrupted_approvals(&[console.id().to_string()])
        .await;
    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    let router = core.router.clone();
    // The console ends the router by dropping its sender, once its input ends.
    let serving =
        tokio::spawn(async move { router.serve(inbound_rx, CancellationToken::new()).await });
    let stop = CancellationToken::new();
    let watching = tokio::spawn(watch_jobs(core.clone(), stop.clone()));
    let scheduling = tokio::spawn(core.scheduler.clone().run(stop.clone()));
    let result = console.run(inbound_tx, stop.clone()).await;
    // The console dropped its sender: the router finishes queued turns, then returns.
    stop.cancel();
    let _ = watching.await;
    let _ = tokio::time::timeout(DRAIN_DEADLINE, scheduling).await;
    serving.await.context("the router task failed")?;
    let _ = tokio::time::timeout(DRAIN_DEADLINE, core.ops.mcp_shutdown()).await;
    core.store.close().await;
    result
}
