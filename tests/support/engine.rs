//! A second, real Docker engine for fleet tests: its own `dockerd` with its own data root,
//! exec root and socket (and, when asked, a TCP listener that requires TLS client
//! certificates), no bridge and no iptables rules, so it does not touch the main engine. It can
//! be stopped and started again on the same data; dropping it stops it and removes its files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bollard::Docker;

use super::docker::{container_state, ensure_test_image_on};

const START_WAIT: Duration = Duration::from_secs(60);

/// TLS material for a `tcp://` engine: the client's files, as `[[docker.hosts]]` names them.
pub struct Tls {
    pub address: String,
    pub ca: PathBuf,
    /// A CA that did not sign the engine's certificate.
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Engine {
    dir: PathBuf,
    pub socket: PathBuf,
    pub tls: Option<Tls>,
    child: Option<Child>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for name in ["ca", "other-ca"] {
        let key = format!("{name}-key.pem");
        let cert = format!("{name}.pem");
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=operator test CA",
        ];
        ca.extend(ec);
        ca.extend(["-keyout", key.as_str(), "-out", cert.as_str()]);
        openssl(dir, &ca);
    }
    for (who, subject, ext) in [
        (
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "/CN=operator", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{who}.ext")), ext).unwrap();
        let key = format!("{who}-key.pem");
        let csr = format!("{who}.csr");
        let cert = format!("{who}-cert.pem");
        let ext_file = format!("{who}.ext");
        let mut req = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
        req.extend(ec);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-out",
                &cert,
                "-extfile",
                &ext_file,
            ],
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Engine {
    /// Starts an engine (with a TLS-only TCP listener when `tls`), waits for it, and imports the
    /// test image into it.
    pub async fn start(tls: bool) -> Self {
        let dir = PathBuf::from(format!("/tmp/oe-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = tls.then(|| {
            make_certificates(&dir);
            Tls {
                address: format!("tcp://127.0.0.1:{}", free_port()),
                ca: dir.join("ca.pem"),
                other_ca: dir.join("other-ca.pem"),
                cert: dir.join("client-cert.pem"),
                key: dir.join("client-key.pem"),
            }
        });
        let mut engine = Self {
            socket: dir.join("docker.sock"),
            dir,
            tls,
            child: None,
        };
        engine.run().await;
        ensure_test_image_on(&engine.client().await).await;
        engine
    }

    async fn run(&mut self) {
        let d = &self.dir;
        let mut command = Command::new("dockerd");
        command
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"]);
        if let Some(tls) = &self.tls {
            command
                .arg("-H")
                .arg(&tls.address)
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(d.join("ca.pem"))
                .arg("--tlscert")
                .arg(d.join("server-cert.pem"))
                .arg("--tlskey")
                .arg(d.join("server-key.pem"));
        }
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd must be installed (scripts/test.sh does)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            if let Ok(docker) = Docker::connect_with_unix(
                &self.socket.to_string_lossy(),
                10,
                bollard::API_DEFAULT_VERSION,
            ) && docker.ping().await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second engine did not start: {}",
                std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client on the engine's unix socket.
    pub async fn client(&self) -> Docker {
        Docker::connect_with_unix(
            &self.socket.to_string_lossy(),
            60,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
    }

    /// `unix://` endpoint of this engine.
    pub fn unix_endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Stops dockerd (its containers stop with it) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..300 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts dockerd again on the same data.
    pub async fn restart(&mut self) {
        self.run().await;
    }

    /// Whether the engine has a container for this instance, and whether it runs.
    pub async fn container(&self, instance: &str) -> Option<bool> {
        container_state(&self.client().await, instance).await
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        // The data root holds overlay mounts only while the engine runs; it has stopped.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("exec"))
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
