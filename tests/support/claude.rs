//! The real Claude Code CLI in a test instance: its native linux-x64 build (from the npm
//! package `@anthropic-ai/claude-code-linux-x64`, fetched by scripts/test.sh, which names it in
//! `OPERATOR_TEST_CLAUDE`) with the glibc it links,
//! bash (its Bash tool needs it) and busybox, imported as a local image.

use std::path::{Path, PathBuf};

use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::docker::docker;

/// Where the CLI is, or a panic that says how to get it.
pub fn claude_binary() -> PathBuf {
    let path = std::env::var_os("OPERATOR_TEST_CLAUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/operator/claude-code/claude-2.1.335"));
    assert!(
        path.is_file(),
        "the Claude Code CLI is not at {} (scripts/test.sh fetches it with npm pack @anthropic-ai/claude-code-linux-x64)",
        path.display()
    );
    path
}

/// The shared libraries a host program needs, as `ldd` lists them (the loader included).
fn libraries(program: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

fn copy_into(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(std::fs::canonicalize(file).unwrap(), &to).unwrap();
}

/// Builds and imports the image unless it exists; returns its tag.
pub async fn ensure_claude_image() -> String {
    let binary = claude_binary();
    let size = std::fs::metadata(&binary).unwrap().len();
    let tag = format!("operator-test:claude-{size:x}");
    let docker = docker().await;
    if docker.inspect_image(&tag).await.is_ok() {
        return tag;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for sub in [
        "bin",
        "etc",
        "workspace",
        "tmp",
        "run",
        "proc",
        "sys",
        "dev",
        "usr/local/bin",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !["busybox", "bash"].contains(&applet) {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
    std::fs::copy("/bin/bash", dir.join("bin/bash")).unwrap();
    for program in [Path::new("/bin/bash"), binary.as_path()] {
        for lib in libraries(program) {
            copy_into(dir, &lib);
        }
    }
    std::fs::copy(&binary, dir.join("usr/local/bin/claude")).unwrap();
    std::fs::set_permissions(
        dir.join("usr/local/bin/claude"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/workspace:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nagent:x:1000:\n").unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar failed");
    let (repo, version) = tag.split_once(':').unwrap();
    let options = CreateImageOptions {
        from_src: Some("-".into()),
        repo: Some(repo.into()),
        tag: Some(version.into()),
        ..Default::default()
    };
    let mut import = docker.create_image(
        Some(options),
        Some(bollard::body_full(tar.stdout.into())),
        None,
    );
    while let Some(step) = import.next().await {
        step.expect("image import");
    }
    tag
}

/// The process id of an instance's container, for its network namespace.
pub async fn container_pid(instance: &str) -> i64 {
    let info = docker()
        .await
        .inspect_container(
            &format!("operator-{instance}"),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("the container");
    info.state.and_then(|s| s.pid).expect("a running container")
}
