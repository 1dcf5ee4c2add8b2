//! Where a Docker engine is and how to reach it: the local socket, a `unix://` socket, `tcp://`
//! with TLS client certificates, or `ssh://user@host`. For SSH the daemon keeps one `ssh`
//! process per host forwarding a private local socket to the remote engine's socket (as
//! `docker -H ssh://` does, without needing the `docker` client on the remote side); a tunnel that
//! died is started again on the next call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::config::DockerHostSettings;
use crate::instance::InstanceError;

/// How long a new SSH tunnel may take to open its socket.
const TUNNEL_WAIT: Duration = Duration::from_secs(15);
/// The engine's socket on an SSH host unless the URL gives a path.
const REMOTE_SOCKET: &str = "/var/run/docker.sock";

#[derive(Clone)]
pub enum Endpoint {
    /// The local socket, or `DOCKER_HOST`.
    Local,
    Unix(String),
    /// `tcp://` without TLS: only for `[docker] host`, where it has always been accepted.
    Plain(String),
    Tls {
        address: String,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    Ssh(Arc<SshTunnel>),
}

impl Endpoint {
    /// The endpoint of `[docker] host`.
    pub fn from_host(host: &str) -> Self {
        let host = host.trim();
        if host.is_empty() {
            Endpoint::Local
        } else if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(path.to_string())
        } else {
            Endpoint::Plain(host.to_string())
        }
    }

    /// The endpoint of a `[[docker.hosts]]` entry (already validated by the config).
    pub fn from_settings(host: &DockerHostSettings, run_dir: &Path) -> Result<Self, String> {
        let endpoint = host.endpoint.trim();
        if let Some(path) = endpoint.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.to_string()));
        }
        if endpoint.starts_with("tcp://") {
            let file = |f: &Option<PathBuf>, key: &str| {
                f.clone()
                    .ok_or_else(|| format!("host {}: {key} is required for tcp://", host.name))
            };
            return Ok(Endpoint::Tls {
                address: endpoint.to_string(),
                ca: file(&host.tls_ca, "tls_ca")?,
                cert: file(&host.tls_cert, "tls_cert")?,
                key: file(&host.tls_key, "tls_key")?,
            });
        }
        if let Some(rest) = endpoint.strip_prefix("ssh://") {
            return Ok(Endpoint::Ssh(Arc::new(SshTunnel::parse(
                &host.name, rest, host, run_dir,
            )?)));
        }
        Err(format!(
            "host {}: endpoint {endpoint:?} must start with unix://, tcp:// or ssh://",
            host.name
        ))
    }

    pub fn describe(&self) -> String {
        match self {
            Endpoint::Local => "the local socket".into(),
            Endpoint::Unix(path) => format!("unix://{path}"),
            Endpoint::Plain(address) => address.clone(),
            Endpoint::Tls { address, .. } => format!("{address} (TLS)"),
            Endpoint::Ssh(tunnel) => tunnel.describe(),
        }
    }

    /// A client for the engine (not yet negotiated).
    pub async fn connect(&self, timeout: u64) -> Result<Docker, InstanceError> {
        let version = bollard::API_DEFAULT_VERSION;
        let unreachable = |e: bollard::errors::Error| {
            InstanceError::Unreachable(format!("{}: {e}", self.describe()))
        };
        match self {
            Endpoint::Local => Docker::connect_with_local_defaults().map_err(unreachable),
            Endpoint::Unix(path) => {
                Docker::connect_with_unix(path, timeout, version).map_err(unreachable)
            }
            Endpoint::Plain(address) => {
                Docker::connect_with_http(address, timeout, version).map_err(unreachable)
            }
            Endpoint::Tls {
                address,
                ca,
                cert,
                key,
            } => {
                let config = tls_config(ca, cert, key).map_err(|why| {
                    InstanceError::Unreachable(format!("{}: {why}", self.describe()))
                })?;
                tls_transport(address, config, timeout).map_err(unreachable)
            }
            Endpoint::Ssh(tunnel) => {
                let socket = tunnel.open().await?;
                Docker::connect_with_unix(&socket.to_string_lossy(), timeout, version)
                    .map_err(unreachable)
            }
        }
    }
}

/// The client side of Docker's `--tlsverify`: only `ca` is trusted, and `cert`/`key` prove who
/// we are.
fn tls_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, String> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| format!("the TLS file {} cannot be read: {e}", path.display()))
    };
    let pem_certs = |path: &Path| -> Result<Vec<_>, String> {
        let bytes = read(path)?;
        let certs: Vec<_> = rustls_pemfile::certs(&mut bytes.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in pem_certs(ca)? {
        roots
            .add(certificate)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let key_bytes = read(key)?;
    let private = rustls_pemfile::private_key(&mut key_bytes.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{} holds no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(pem_certs(cert)?, private)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))
}

/// A client over HTTPS that keeps its connections (bollard's own opens one per request, a TLS
/// handshake each time) and sends small requests at once (TCP_NODELAY).
fn tls_transport(
    address: &str,
    config: rustls::ClientConfig,
    timeout: u64,
) -> Result<Docker, bollard::errors::Error> {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnector::from((http, config));
    let client = Arc::new(
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https),
    );
    let authority = address
        .trim_start_matches("tcp://")
        .trim_start_matches("https://");
    Docker::connect_with_custom_transport(
        move |request: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client.request(request).await.map_err(|e| {
                    // hyper's message is "client error (Connect)"; the cause (a refused
                    // connection, a certificate not signed by the CA) is in its sources.
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(cause) = source {
                        text.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    bollard::errors::Error::from(std::io::Error::other(text))
                })
            }
        },
        Some(format!("https://{authority}")),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )
}

/// One `ssh -L` process forwarding a local socket to a remote engine.
pub struct SshTunnel {
    /// `user@host`
    destination: String,
    port: Option<u16>,
    remote_socket: String,
    key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    /// The forwarded socket, in a directory only this user can enter.
    socket: PathBuf,
    child: Mutex<Option<Child>>,
}

impl SshTunnel {
    fn parse(
        name: &str,
        rest: &str,
        host: &DockerHostSettings,
        run_dir: &Path,
    ) -> Result<Self, String> {
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, format!("/{path}")),
            None => (rest, REMOTE_SOCKET.to_string()),
        };
        let (destination, port) = match authority.rsplit_once(':') {
            Some((destination, port)) => (
                destination,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("host {name}: {port:?} is not a port"))?,
                ),
            ),
            None => (authority, None),
        };
        if destination.is_empty() || destination.starts_with('-') || destination.contains(' ') {
            return Err(format!("host {name}: {destination:?} is not user@host"));
        }
        Ok(Self {
            destination: destination.to_string(),
            port,
            remote_socket: if path == "/" {
                REMOTE_SOCKET.into()
            } else {
                path
            },
            key: host.ssh_key.clone(),
            known_hosts: host.ssh_known_hosts.clone(),
            socket: run_dir.join(format!("ssh-{name}.sock")),
            child: Mutex::new(None),
        })
    }

    fn describe(&self) -> String {
        match self.port {
            Some(port) => format!("ssh://{}:{port}", self.destination),
            None => format!("ssh://{}", self.destination),
        }
    }

    /// The local socket, starting (or restarting) the tunnel when it is not running.
    async fn open(&self) -> Result<PathBuf, InstanceError> {
        let mut child = self.child.lock().await;
        if let Some(running) = child.as_mut()
            && matches!(running.try_wait(), Ok(None))
            && self.socket.exists()
        {
            return Ok(self.socket.clone());
        }
        if let Some(mut old) = child.take() {
            let _ = old.kill().await;
        }
        let fail = |why: String| InstanceError::Unreachable(format!("{}: {why}", self.describe()));
        if let Some(dir) = self.socket.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        let mut command = Command::new("ssh");
        command
            .arg("-nNT")
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ExitOnForwardFailure=yes"])
            .args(["-o", "ServerAliveInterval=15"])
            .args(["-o", "ServerAliveCountMax=3"])
            .args(["-o", "StreamLocalBindUnlink=yes"])
            .args(["-o", "ConnectTimeout=10"]);
        if let Some(key) = &self.key {
            command
                .arg("-i")
                .arg(key)
                .args(["-o", "IdentitiesOnly=yes"]);
        }
        if let Some(known) = &self.known_hosts {
            command
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", known.display()))
                .args(["-o", "StrictHostKeyChecking=yes"]);
        }
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        command
            .arg("-L")
            .arg(format!("{}:{}", self.socket.display(), self.remote_socket))
            .arg("--")
            .arg(&self.destination)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut spawned = command
            .spawn()
            .map_err(|e| fail(format!("cannot run ssh: {e}")))?;
        let deadline = tokio::time::Instant::now() + TUNNEL_WAIT;
        loop {
            if self.socket.exists() {
                *child = Some(spawned);
                return Ok(self.socket.clone());
            }
            if let Ok(Some(status)) = spawned.try_wait() {
                let mut stderr = String::new();
                if let Some(mut err) = spawned.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = err.read_to_string(&mut stderr).await;
                }
                return Err(fail(format!(
                    "ssh exited ({status}): {}",
                    stderr.trim().lines().last().unwrap_or("no message")
                )));
            }
            if tokio::time::Instant::now() > deadline {
                let _ = spawned.kill().await;
                return Err(fail(format!(
                    "the tunnel did not open within {} s",
                    TUNNEL_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str) -> DockerHostSettings {
        DockerHostSettings::new("b", endpoint)
    }

    #[test]
    fn endpoints_are_read() {
        let run = Path::new("/run/operator");
        let Endpoint::Ssh(t) =
            Endpoint::from_settings(&settings("ssh://ops@box:2222"), run).unwrap()
        else {
            panic!("not ssh")
        };
        assert_eq!(
            (t.destination.as_str(), t.port, t.remote_socket.as_str()),
            ("ops@box", Some(2222), REMOTE_SOCKET)
        );
        assert_eq!(t.socket, run.join("ssh-b.sock"));
        let Endpoint::Ssh(t) =
            Endpoint::from_settings(&settings("ssh://ops@box/run/user/1000/docker.sock"), run)
                .unwrap()
        else {
            panic!("not ssh")
        };
        assert_eq!(t.remote_socket, "/run/user/1000/docker.sock");
        assert!(Endpoint::from_settings(&settings("ssh://-oProxyCommand=x"), run).is_err());
        assert!(Endpoint::from_settings(&settings("ssh://ops@box:many"), run).is_err());
        assert!(Endpoint::from_settings(&settings("tcp://box:2376"), run).is_err());
        assert!(matches!(
            Endpoint::from_settings(&settings("unix:///tmp/d.sock"), run).unwrap(),
            Endpoint::Unix(p) if p == "/tmp/d.sock"
        ));
    }
}
