//! The real Claude Code CLI in a test instance: its native linux-x64 build (from the npm
//! package `@anthropic-ai/claude-code-linux-x64`, fetched by scripts/test.sh, which names it in
//! `OPERATOR_TEST_CLAUDE`) with the glibc it links,
//! bash (its Bash tool needs it) and busybox, imported as a local image.

use std::path::{Path, PathBuf};

use super::docker::{busybox_rootfs, docker, import_rootfs};

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
pub fn libraries(program: &Path) -> Vec<PathBuf> {
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

pub fn copy_into(root: &Path, file: &Path) {
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
    busybox_rootfs(dir, &["bash"]);
    std::fs::create_dir_all(dir.join("usr/local/bin")).unwrap();
    std::fs::copy("/bin/bash", dir.join("bin/bash")).unwrap();
    for program in [Path::new("/bin/bash"), binary.as_path()] {
        for lib in libraries(program) {
            copy_into(dir, &lib);
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(&binary, dir.join("usr/local/bin/claude")).unwrap();
    std::fs::set_permissions(
        dir.join("usr/local/bin/claude"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    import_rootfs(&docker, dir, &tag).await;
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
