//! Instances: each agent's own computer, one long-lived hardened container plus a named volume
//! mounted at `/workspace`.
//!
//! [`InstanceBackend`] is the small interface the rest of the daemon uses; `docker.rs` implements
//! it over the Docker API with bollard (never the `docker` CLI). This module knows nothing of
//! agents, chats or operations; file browsing is built on `exec` in `files.rs`.

mod docker;
pub mod files;
pub mod fleet;
pub mod image;
mod profile;
mod tar;

use std::time::Duration;

use crate::agent::llm::BoxFuture;

pub use docker::{DockerBackend, Endpoint};
pub use fleet::{Fleet, Host, HostHealth, HostSpec, Load, Placement};

/// A workspace as a tar stream whose entries sit under `workspace/`.
pub type ArchiveStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

/// Label on every container and volume the daemon owns.
pub const LABEL_MANAGED: &str = "operator.managed";
/// Label carrying the instance name.
pub const LABEL_INSTANCE: &str = "operator.instance";
/// The uid:gid commands run as inside an instance.
pub const INSTANCE_USER: &str = "1000:1000";
/// The same user, as a number (uid and gid are equal).
pub const INSTANCE_UID: u32 = 1000;

/// What a container is created from.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub name: String,
    pub image: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    /// `none`, `bridge`, or another Docker network.
    pub network: String,
}

/// Settings for instances created without explicit ones (`[docker]` in the config).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceDefaults {
    pub image: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids_limit: i64,
    pub network: String,
}

impl InstanceDefaults {
    /// With `packages` or `setup`, new instances use the workstation image's tag.
    pub fn from_settings(docker: &crate::config::DockerSettings) -> Self {
        let image = match image::Recipe::from_settings(docker) {
            Some(recipe) => recipe.tag(),
            None => docker.image.clone(),
        };
        Self {
            image,
            memory_mb: docker.memory_mb,
            cpus: docker.cpus,
            pids_limit: docker.pids_limit,
            network: docker.network.clone(),
        }
    }
}

/// The container's state as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Stopped,
    /// Our records name it, the engine does not have it.
    Missing,
}

impl RunState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Running => "active",
            RunState::Stopped => "stopped",
            RunState::Missing => "missing",
        }
    }
}

/// A command to run in an instance (through `sh -c`).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: String,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Bytes of output kept; the rest is counted and dropped.
    pub output_cap: usize,
    pub stdin: Option<Vec<u8>>,
    /// Told each piece of output as it comes (a CLI's events shown as progress).
    pub on_output: Option<OutputSink>,
}

type OutputFn = dyn Fn(&[u8]) + Send + Sync;

/// A callback for a command's output as it comes.
#[derive(Clone)]
pub struct OutputSink(std::sync::Arc<OutputFn>);

impl OutputSink {
    pub fn new(f: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }

    pub fn tell(&self, bytes: &[u8]) {
        (self.0)(bytes)
    }
}

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            output_cap: 16 * 1024,
            stdin: None,
            on_output: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// `None` when the engine could not tell (the command was cut off).
    pub exit_code: Option<i64>,
    /// stdout and stderr, interleaved as they came, up to the cap.
    pub output: String,
    /// Bytes dropped beyond the cap.
    pub dropped: usize,
    pub timed_out: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstanceError {
    #[error("the Docker engine is unreachable ({0}); instances cannot be managed until it is back")]
    Unreachable(String),
    #[error("image {image} is not available: {detail}")]
    Image { image: String, detail: String },
    #[error("the container of instance {0} does not exist")]
    Missing(String),
    #[error("{0}")]
    Failed(String),
}

/// A command kept running with its input and output attached (an MCP server over stdio): what
/// it writes to stdout comes out of `stdout`, which ends when the command does; its stderr goes
/// to `stderr`, a line at a time.
pub struct Attached {
    pub stdin: tokio::io::WriteHalf<tokio::io::SimplexStream>,
    pub stdout: tokio::io::ReadHalf<tokio::io::SimplexStream>,
    pub stderr: tokio::sync::mpsc::Receiver<String>,
}

/// A progress callback for long steps such as an image pull.
pub type ProgressFn<'a> = &'a (dyn Fn(String) + Send + Sync);

pub trait InstanceBackend: Send + Sync {
    /// The engine's version; proves it answers.
    fn engine(&self) -> BoxFuture<'_, Result<String, InstanceError>>;
    /// Pulls the image when it is not present (a workstation image whose recipe is known is
    /// built instead).
    fn ensure_image<'a>(
        &'a self,
        image: &'a str,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<(), InstanceError>>;
    /// Whether the engine has the image (on a fleet: every host that answers has it).
    fn has_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, InstanceError>>;
    /// Builds a workstation image unless its tag exists (or always, with `force`). Returns
    /// whether it was built.
    fn build_image<'a>(
        &'a self,
        recipe: &'a image::Recipe,
        force: bool,
        progress: ProgressFn<'a>,
    ) -> BoxFuture<'a, Result<bool, InstanceError>>;
    /// Creates the workspace volume (if new; a copy of `copy_from`'s workspace when given) and
    /// the container, and starts it. An existing volume is reused as it is.
    fn create<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        copy_from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InstanceError>>;
    /// Removes the container, and the workspace volume unless `keep_volume`.
    fn remove<'a>(
        &'a self,
        name: &'a str,
        keep_volume: bool,
    ) -> BoxFuture<'a, Result<(), InstanceError>>;
    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>>;
    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>>;
    fn restart<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), InstanceError>>;
    fn state<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<RunState, InstanceError>>;
    /// The last `tail` lines of the container's output.
    fn logs<'a>(&'a self, name: &'a str, tail: u32)
    -> BoxFuture<'a, Result<String, InstanceError>>;
    fn exec<'a>(
        &'a self,
        name: &'a str,
        request: ExecRequest,
    ) -> BoxFuture<'a, Result<ExecOutput, InstanceError>>;
    /// Starts a shell command detached: it runs on inside the container whatever happens to
    /// the daemon. Its output and exit status are the command's own business (see `ops::jobs`).
    fn spawn<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<(), InstanceError>>;
    /// Starts a shell command with stdin and stdout attached; it runs until it exits, its
    /// input is closed, or the daemon stops it through another exec.
    fn attach<'a>(
        &'a self,
        name: &'a str,
        command: String,
        env: Vec<(String, String)>,
    ) -> BoxFuture<'a, Result<Attached, InstanceError>>;
    /// Names of the instances whose containers carry our label.
    fn managed(&self) -> BoxFuture<'_, Result<Vec<String>, InstanceError>>;
    /// The instance's workspace, read from its container (which may be stopped).
    fn export_workspace<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ArchiveStream, InstanceError>>;
    /// Fills a new workspace volume for `spec` from an exported workspace (ownership kept).
    /// Fails when the volume already exists. `create` then finds it and uses it.
    fn import_workspace<'a>(
        &'a self,
        spec: &'a InstanceSpec,
        archive: ArchiveStream,
    ) -> BoxFuture<'a, Result<(), InstanceError>>;
}

/// The fleet the config describes: every `[[docker.hosts]]` entry, or the one engine of
/// `[docker] host`. SSH tunnels keep their sockets under `run_dir`.
pub fn fleet_from_settings(
    docker: &crate::config::DockerSettings,
    run_dir: &std::path::Path,
) -> Result<Fleet, String> {
    if docker.hosts.is_empty() {
        let backend = std::sync::Arc::new(DockerBackend::new(&docker.host));
        return Ok(Fleet::single(&docker.host, backend));
    }
    let mut hosts = Vec::new();
    for h in &docker.hosts {
        let endpoint = Endpoint::from_settings(h, run_dir)?;
        let spec = HostSpec {
            name: h.name.clone(),
            endpoint: endpoint.describe(),
            labels: h.labels.clone(),
            capacity_instances: h.capacity_instances,
            capacity_memory_mb: h.capacity_memory_mb,
        };
        let backend: std::sync::Arc<dyn InstanceBackend> =
            std::sync::Arc::new(DockerBackend::with_endpoint(endpoint));
        hosts.push((spec, backend));
    }
    Ok(Fleet::new(hosts))
}

/// A shell line that ends the process whose id is in `pid_file` and every descendant (read
/// from /proc, which GNU and busybox both have): TERM, then, unless it was gone already, a second
/// and KILL. A process already gone costs no wait (its descendants, if any, were handed to the
/// container's init when it died, out of the tree's reach either way).
pub fn kill_tree_command(pid_file: &str) -> String {
    format!(
        "kill_tree() {{ for c in $(awk -v p=\"$1\" '$4 == p {{ print $1 }}' /proc/[0-9]*/stat 2>/dev/null); do kill_tree \"$c\"; done; kill -{{SIG}} \"$1\" 2>/dev/null; }}; \
         p=$(cat {f} 2>/dev/null) || exit 0; SIG=TERM; kill_tree \"$p\"; \
         if kill -0 \"$p\" 2>/dev/null; then sleep 1; SIG=KILL; kill_tree \"$p\"; fi; rm -f {f}",
        f = pid_file
    )
    .replace("{SIG}", "$SIG")
}

/// The container name of an instance.
pub fn container_name(instance: &str) -> String {
    format!("operator-{instance}")
}

/// The workspace volume of an instance.
pub fn volume_name(instance: &str) -> String {
    format!("operator-{instance}-workspace")
}
