//! The real Docker engine for tests: a tiny local image (a busybox-static root filesystem
//! imported through the API, since no registry is reachable), and cleanup of every container
//! and volume a test created, even when the test fails.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{CreateImageOptions, RemoveContainerOptions, RemoveVolumeOptions};
use futures_util::StreamExt;

/// The image every instance test uses. Bump the tag when the recipe below changes, so engines
/// that kept an older build make a new one.
pub const TEST_IMAGE: &str = "operator-test:busybox-2";
const BUSYBOX: &str = "/bin/busybox";

pub async fn docker() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("a Docker engine must run for these tests: scripts/test.sh starts one")
}

/// Builds and imports the test image unless it exists. Safe to call from parallel tests.
pub async fn ensure_test_image() {
    ensure_test_image_on(&docker().await).await;
}

/// The same, on another engine.
pub async fn ensure_test_image_on(docker: &Docker) {
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    busybox_rootfs(root.path(), &[]);
    import_rootfs(docker, root.path(), TEST_IMAGE).await;
}

/// A root filesystem for a test image in `dir`: busybox with its applets (but `except`), the
/// usual folders (a world-writable /tmp), and user 1000 whose home is /workspace.
pub fn busybox_rootfs(dir: &std::path::Path, except: &[&str]) {
    for sub in [
        "bin",
        "etc",
        "workspace",
        "tmp",
        "run",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    // Docker copies the image's /tmp permissions onto the tmpfs mounted there.
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .expect("busybox-static must be installed (scripts/test.sh does)");
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !except.contains(&applet) {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/workspace:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nagent:x:1000:\n").unwrap();
}

/// Imports the root filesystem in `dir` as the image `tag` (a tar through the API).
pub async fn import_rootfs(docker: &Docker, dir: &std::path::Path, tag: &str) {
    let tar = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar failed");
    import_tar(docker, tar.stdout, tag).await;
}

/// Imports a root filesystem tar as the image `tag`.
pub async fn import_tar(docker: &Docker, tar: Vec<u8>, tag: &str) {
    let (repo, version) = tag.split_once(':').unwrap();
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(version.into()),
        ..Default::default()
    };
    let mut import = docker.create_image(Some(options), Some(bollard::body_full(tar.into())), None);
    while let Some(step) = import.next().await {
        step.expect("image import");
    }
}

/// A minimal Debian bookworm image (scripts/test.sh makes its root filesystem with debootstrap
/// and names the tar in `OPERATOR_TEST_DEBIAN`), imported unless it exists; returns its tag.
pub async fn ensure_debian_image() -> String {
    let tar = std::env::var_os("OPERATOR_TEST_DEBIAN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/operator/debian-bookworm-minbase.tar".into());
    assert!(
        tar.is_file(),
        "no Debian base at {} (scripts/test.sh makes it with debootstrap)",
        tar.display()
    );
    let size = std::fs::metadata(&tar).unwrap().len();
    let tag = format!("operator-test:debian-{size:x}");
    let docker = docker().await;
    if docker.inspect_image(&tag).await.is_ok() {
        return tag;
    }
    import_tar(&docker, std::fs::read(&tar).unwrap(), &tag).await;
    tag
}

/// Removes the named instances' containers and volumes when dropped.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.0);
        // Drop cannot await; a separate thread with its own runtime does the removal.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let docker = docker().await;
                for name in names {
                    let force = RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    };
                    let _ = docker
                        .remove_container(&format!("operator-{name}"), Some(force.clone()))
                        .await;
                    let _ = docker
                        .remove_container(&format!("operator-{name}-init"), Some(force))
                        .await;
                    let _ = docker
                        .remove_volume(
                            &format!("operator-{name}-workspace"),
                            Some(RemoveVolumeOptions { force: true }),
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// A unique instance name for one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Whether an engine has a container for this instance, and whether it runs.
pub async fn container_state(docker: &Docker, instance: &str) -> Option<bool> {
    let info = docker
        .inspect_container(
            &format!("operator-{instance}"),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()?;
    Some(info.state.and_then(|s| s.running).unwrap_or(false))
}

/// Labels of a container, for assertions.
pub async fn labels(name: &str) -> HashMap<String, String> {
    let info = docker()
        .await
        .inspect_container(
            &format!("operator-{name}"),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    info.config.and_then(|c| c.labels).unwrap_or_default()
}
