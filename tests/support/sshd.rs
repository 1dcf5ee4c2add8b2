//! A private OpenSSH server on 127.0.0.1 for the fleet's `ssh://` hosts: its own host key,
//! config and authorized key, run in the foreground as a child and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Sshd {
    _dir: tempfile::TempDir,
    pub port: u16,
    /// The client's private key, authorized for the current user.
    pub key: PathBuf,
    /// A known_hosts file holding this server's host key.
    pub known_hosts: PathBuf,
    /// One holding another key, as if the server had been replaced.
    pub wrong_known_hosts: PathBuf,
    child: Child,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen must be installed (scripts/test.sh does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        keygen(&d.join("other_key"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let known = |key: &str| {
            let public = std::fs::read_to_string(d.join(format!("{key}.pub"))).unwrap();
            let public: Vec<&str> = public.split_whitespace().take(2).collect();
            format!("[127.0.0.1]:{port} {}\n", public.join(" "))
        };
        std::fs::write(d.join("known_hosts"), known("host_key")).unwrap();
        std::fs::write(d.join("wrong_known_hosts"), known("other_key")).unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 AllowStreamLocalForwarding yes\n",
                dir = d.display()
            ),
        )
        .unwrap();
        // sshd insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd must be installed (scripts/test.sh installs openssh-server)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(tokio::time::Instant::now() < deadline, "sshd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            key: d.join("client_key"),
            known_hosts: d.join("known_hosts"),
            wrong_known_hosts: d.join("wrong_known_hosts"),
            port,
            _dir: dir,
            child,
        }
    }

    /// The user tests log in as: whoever runs them.
    pub fn user() -> String {
        let out = Command::new("id").arg("-un").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
