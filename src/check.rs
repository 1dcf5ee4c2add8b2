//! `operator check`: validates the configuration, opens the database, and reports what is
//! configured and what is reachable. Warnings (something not configured) keep exit code 0;
//! errors (something configured that does not work) make it non-zero.

use std::fmt::Write as _;
use std::path::Path;

use crate::agent::llm;
use crate::config::Loaded;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Error,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, topic: &'static str, message: impl Into<String>) {
        self.findings.push(Finding {
            level,
            topic,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Error)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mark = match f.level {
                Level::Ok => "ok   ",
                Level::Warn => "warn ",
                Level::Error => "ERROR",
            };
            let _ = writeln!(out, "{mark} {:<9} {}", f.topic, f.message);
        }
        let errors = self
            .findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .count();
        let warnings = self
            .findings
            .iter()
            .filter(|f| f.level == Level::Warn)
            .count();
        let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
        out
    }
}

pub async fn run(loaded: &Loaded) -> Report {
    let mut report = Report::default();
    let settings = &loaded.settings;
    match &loaded.source {
        Some(path) => report.push(Level::Ok, "config", format!("{} is valid", path.display())),
        None => report.push(
            Level::Ok,
            "config",
            "no config file found; using built-in defaults",
        ),
    }

    check_store(&mut report, &settings.state_dir()).await;
    check_secrets(&mut report, &settings.state_dir()).await;

    match llm::from_settings(&settings.llm) {
        Ok(None) => report.push(
            Level::Warn,
            "llm",
            "not configured: set [llm] api_key (or OPERATOR__LLM__API_KEY); Operator answers commands but cannot think",
        ),
        Ok(Some(provider)) => match provider.probe().await {
            Ok(detail) => report.push(Level::Ok, "llm", format!("{}: {detail}", provider.describe())),
            Err(e) => report.push(Level::Error, "llm", format!("{}: {e}", provider.describe())),
        },
        Err(e) => report.push(Level::Error, "llm", e.to_string()),
    }

    let t = &settings.telegram;
    if !t.enabled {
        report.push(Level::Warn, "telegram", "disabled");
    } else if t.token.is_empty() {
        report.push(
            Level::Error,
            "telegram",
            "enabled, but [telegram] token is empty",
        );
    } else {
        match crate::channel::telegram::probe(t.token.expose(), &t.api_url).await {
            Ok(bot) => report.push(
                Level::Ok,
                "telegram",
                format!("{bot} answers at {}", t.api_url),
            ),
            Err(e) => report.push(Level::Error, "telegram", e.to_string()),
        }
    }
    let d = &settings.discord;
    if !d.enabled {
        report.push(Level::Warn, "discord", "disabled");
    } else if d.token.is_empty() {
        report.push(
            Level::Error,
            "discord",
            "enabled, but [discord] token is empty",
        );
    } else {
        match crate::channel::discord::probe(d.token.expose(), &d.api_url).await {
            Ok(bot) => report.push(
                Level::Ok,
                "discord",
                format!("{bot} answers at {}", d.api_url),
            ),
            Err(e) => report.push(Level::Error, "discord", e.to_string()),
        }
    }

    check_docker(&mut report, settings).await;
    check_mcp(&mut report, settings).await;

    let listen = &settings.admin.listen;
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    if loopback {
        report.push(
            Level::Ok,
            "admin",
            format!("listens on {listen} (loopback only)"),
        );
    } else if settings.admin.token.is_empty() {
        report.push(
            Level::Error,
            "admin",
            format!(
                "listen = {listen} is reachable from other machines but [admin] token is empty"
            ),
        );
    } else {
        report.push(
            Level::Warn,
            "admin",
            format!("listens on {listen}, beyond loopback (token set)"),
        );
    }
    report
}

/// Each Docker host: whether it answers, its engine, and what it holds against its capacity. A
/// host that does not answer is an error when it was configured, and a warning for the default
/// socket (instances are then unavailable, the rest works).
async fn check_docker(report: &mut Report, settings: &crate::config::Settings) {
    let docker = &settings.docker;
    let fleet =
        match crate::instance::fleet_from_settings(docker, &settings.state_dir().join("run")) {
            Ok(fleet) => fleet,
            Err(e) => {
                report.push(Level::Error, "docker", e);
                return;
            }
        };
    let held = instances_per_host(&settings.state_dir(), fleet.first_host()).await;
    let several = !docker.hosts.is_empty();
    for (host, health) in fleet.probe_all().await {
        let used = held.get(host.name()).copied().unwrap_or_default();
        let (count, memory) = (used.instances, used.memory_mb);
        let mut load = format!("{count} instance(s)");
        if let Some(cap) = host.spec.capacity_instances {
            load.push_str(&format!(" of {cap}"));
        }
        if let Some(cap) = host.spec.capacity_memory_mb {
            load.push_str(&format!(", {memory} of {cap} MiB promised"));
        }
        let name = if several {
            format!("host {} ({})", host.name(), host.spec.endpoint)
        } else {
            host.spec.endpoint.clone()
        };
        match (health.reachable, health.version) {
            (Some(true), Some(version)) => report.push(
                Level::Ok,
                "docker",
                format!("{name}: {version} answers; {load}"),
            ),
            _ => {
                let level = if several || !docker.host.trim().is_empty() {
                    Level::Error
                } else {
                    Level::Warn
                };
                let why = health.error.unwrap_or_else(|| "no answer".into());
                report.push(level, "docker", format!("{name}: {why}; {load}"));
            }
        }
    }
    if let Some(recipe) = crate::instance::image::Recipe::from_settings(docker) {
        use crate::instance::InstanceBackend;
        let tag = recipe.tag();
        match fleet.has_image(&tag).await {
            Ok(true) => report.push(Level::Ok, "image", format!("{tag} (the workstation image) is built")),
            Ok(false) => report.push(
                Level::Warn,
                "image",
                format!("{tag} (the workstation image of [docker] packages and setup) is not built yet: the first instance builds it, or run `operator image build`"),
            ),
            Err(e) => report.push(Level::Warn, "image", format!("{tag}: cannot tell whether it is built: {e}")),
        }
    }
}

/// The config's MCP servers: an HTTP one is connected to (its header secrets filled in from the
/// store) and its tools counted; a stdio one runs only inside agents' instances.
async fn check_mcp(report: &mut Report, settings: &crate::config::Settings) {
    for server in &settings.mcp.servers {
        let Some(url) = &server.url else {
            let command = server.command.as_deref().unwrap_or_default();
            report.push(
                Level::Ok,
                "mcp",
                format!(
                    "{}: stdio `{command}`, started inside each agent's instance when it is used",
                    server.name
                ),
            );
            continue;
        };
        let headers = match mcp_headers(&settings.state_dir(), &server.headers).await {
            Ok(h) => h,
            Err(e) => {
                report.push(Level::Error, "mcp", format!("{}: {e}", server.name));
                continue;
            }
        };
        let hub = crate::mcp::Hub::default();
        let connect = crate::mcp::Connect::Http {
            url: url.clone(),
            headers,
        };
        let tools = hub.tools(
            "check",
            Box::new(move || Box::pin(async move { Ok(connect) })),
        );
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), tools).await;
        let redactor = crate::secrets::Redactor::global();
        match outcome {
            Ok(Ok(tools)) => report.push(
                Level::Ok,
                "mcp",
                format!(
                    "{} ({url}) answers with {} tool(s)",
                    server.name,
                    tools.len()
                ),
            ),
            Ok(Err(e)) => report.push(
                Level::Error,
                "mcp",
                format!("{} ({url}): {}", server.name, redactor.redact(&e)),
            ),
            Err(_) => report.push(
                Level::Error,
                "mcp",
                format!("{} ({url}): no answer within 10 s", server.name),
            ),
        }
        hub.close("check").await;
    }
}

/// Header values with the secrets they name filled in (and registered for redaction).
async fn mcp_headers(
    dir: &Path,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let wanted = crate::domain::secret_refs(value)?;
        let mut found = std::collections::HashMap::new();
        if !wanted.is_empty() {
            let key = match crate::secrets::MasterKey::load_existing(dir) {
                Ok(Some((key, _))) => key,
                _ => {
                    return Err(format!(
                        "header {name} names secrets, and there is no master key to open them"
                    ));
                }
            };
            let store = Store::open(dir).await.map_err(|e| e.to_string())?;
            for secret in wanted {
                let record = store.secret(&secret).await;
                let value = record
                    .map_err(|_| {
                        format!("header {name} names secret {secret}, which does not exist")
                    })
                    .and_then(|r| {
                        key.open(&r.name, &r.sealed, &r.key_id)
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|v| {
                        String::from_utf8(v).map_err(|_| format!("secret {secret} is not text"))
                    });
                match value {
                    Ok(v) => {
                        crate::secrets::Redactor::global().set(&secret, &v);
                        found.insert(secret, v);
                    }
                    Err(e) => {
                        store.close().await;
                        return Err(e);
                    }
                }
            }
            store.close().await;
        }
        out.push((
            name.clone(),
            crate::domain::fill_secrets(value, &|n| found.get(n).cloned())?,
        ));
    }
    Ok(out)
}

/// What each host holds, from the database when it can be read.
async fn instances_per_host(
    dir: &Path,
    first_host: &str,
) -> std::collections::HashMap<String, crate::instance::Load> {
    if !dir.join("operator.db").is_file() {
        return Default::default();
    }
    let Ok(store) = Store::open(dir).await else {
        return Default::default();
    };
    let held = match store.list_instances().await {
        Ok(records) => crate::ops::host_loads(&records, None, first_host),
        Err(_) => Default::default(),
    };
    store.close().await;
    held
}

/// Whether the stored secrets open with the master key this state would use (after a restore
/// without the key, they do not: everything else still works, and this says so).
async fn check_secrets(report: &mut Report, dir: &Path) {
    let Ok(store) = Store::open(dir).await else {
        return;
    };
    let secrets = store.list_secrets().await;
    store.close().await;
    let secrets = match secrets {
        Ok(s) if s.is_empty() => return,
        Ok(s) => s,
        Err(_) => return,
    };
    let key = match crate::secrets::MasterKey::load_existing(dir) {
        Ok(Some((key, _))) => key,
        Ok(None) => {
            let wanted: Vec<&str> = secrets.iter().map(|s| s.key_id.as_str()).collect();
            report.push(
                Level::Error,
                "secrets",
                format!(
                    "{} secrets are sealed with master key {}, but there is no key at {}; they stay unreadable until it is put there",
                    secrets.len(),
                    wanted.first().copied().unwrap_or("?"),
                    dir.join(crate::secrets::KEY_FILE).display()
                ),
            );
            return;
        }
        Err(e) => {
            report.push(Level::Error, "secrets", e.to_string());
            return;
        }
    };
    let locked: Vec<&str> = secrets
        .iter()
        .filter(|s| key.open(&s.name, &s.sealed, &s.key_id).is_err())
        .map(|s| s.name.as_str())
        .collect();
    if locked.is_empty() {
        report.push(
            Level::Ok,
            "secrets",
            format!(
                "{} secrets open with master key {}",
                secrets.len(),
                key.fingerprint()
            ),
        );
    } else {
        report.push(
            Level::Error,
            "secrets",
            format!(
                "{} of {} secrets do not open with master key {} ({}); everything else works",
                locked.len(),
                secrets.len(),
                key.fingerprint(),
                locked.join(", ")
            ),
        );
    }
}

async fn check_store(report: &mut Report, dir: &Path) {
    let store = match Store::open(dir).await {
        Ok(store) => store,
        Err(e) => {
            report.push(Level::Error, "database", e.to_string());
            return;
        }
    };
    match store.pending_migrations().await {
        Ok(0) => report.push(
            Level::Ok,
            "database",
            format!("{} is up to date", dir.join("operator.db").display()),
        ),
        Ok(n) => report.push(
            Level::Warn,
            "database",
            format!("{n} migration(s) pending; `operator run` or `operator migrate` applies them"),
        ),
        Err(e) => report.push(Level::Error, "database", e.to_string()),
    }
    store.close().await;
}
