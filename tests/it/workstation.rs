//! Workstation images against the real engine: `[docker] setup` lines build a derived image
//! through the build endpoint (no package manager is called without packages, so the busybox
//! test base works), a second build reuses the tag, a failing line is named with its output,
//! new instances run on the image, and user-level installs under /workspace survive a restart
//! and a move onto another image.

use std::time::Duration;

use serde_json::json;

use crate::support::World;
use crate::support::docker::{Cleanup, TEST_IMAGE, docker, ensure_test_image, unique};
use crate::support::inproc::core;

fn config(setup: &[&str]) -> String {
    format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nsetup = {}\nnetwork = \"none\"\nmemory_mb = 256\n",
        serde_json::to_string(setup).unwrap()
    )
}

async fn remove_image(tag: &str) {
    let _ = docker()
        .await
        .remove_image(
            tag,
            Some(bollard::query_parameters::RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await;
}

#[tokio::test]
async fn a_workstation_image_is_built_once_used_and_installs_persist() {
    ensure_test_image().await;
    let marker = unique("built");
    let setup = [
        format!("echo {marker} > /etc/operator-marker"),
        "mkdir -p /opt/tools".to_string(),
    ];
    let setup: Vec<&str> = setup.iter().map(String::as_str).collect();
    let world = World::new(None, &config(&setup));
    let first = world.run(&["image", "build"], "").await;
    assert!(first.success(), "{first:?}");
    let tag = first
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("operator-instance:"))
        .expect("the tag")
        .to_string();
    assert!(
        first.stdout.contains("Step 3/5"),
        "steps are shown: {first:?}"
    );
    let second = world.run(&["image", "build"], "").await;
    assert!(
        second.success() && second.stdout.contains(&format!("{tag} is already built")),
        "{second:?}"
    );
    let check = world.run(&["check"], "").await;
    assert!(
        check
            .stdout
            .contains(&format!("{tag} (the workstation image) is built")),
        "{check:?}"
    );

    // A new instance runs on it; an install in /workspace/.local/bin is on PATH and stays
    // through a restart and a move onto the plain base image.
    let name = unique("ws");
    let _cleanup = Cleanup(vec![name.clone()]);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, TEST_IMAGE);
        s.docker.setup = setup.iter().map(|l| l.to_string()).collect();
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    let exec = |command: &str| {
        let args = json!({ "name": name, "command": command });
        let owner = &owner;
        async move {
            ops.invoke(owner, "instance_exec", args)
                .await
                .map(|o| o.text)
                .unwrap_or_else(|e| e.to_string())
        }
    };
    // Gone again: the first instance builds it, and the feed says so.
    remove_image(&tag).await;
    ops.invoke(&owner, "instance_create", json!({ "name": name }))
        .await
        .unwrap();
    assert!(exec("cat /etc/operator-marker").await.contains(&marker));
    let mut feed = String::new();
    for _ in 0..50 {
        feed = ops
            .invoke(&owner, "activity_read", json!({ "limit": 50 }))
            .await
            .unwrap()
            .text;
        if feed.contains(&format!("built image {tag}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(feed.contains(&format!("built image {tag}")), "{feed}");
    let env = exec("echo $HOME $PYTHONUSERBASE $PIP_USER $NPM_CONFIG_PREFIX").await;
    assert!(
        env.contains("/workspace /workspace/.local 1 /workspace/.npm-global"),
        "{env}"
    );
    exec("mkdir -p .local/bin && printf '#!/bin/sh\\necho tool-ok\\n' > .local/bin/mytool && chmod +x .local/bin/mytool").await;
    assert!(exec("mytool").await.contains("tool-ok"));
    ops.invoke(&owner, "instance_restart", json!({ "targets": [name] }))
        .await
        .unwrap();
    assert!(exec("mytool").await.contains("tool-ok"), "after a restart");
    ops.invoke(
        &owner,
        "instance_update",
        json!({ "name": name, "image": TEST_IMAGE }),
    )
    .await
    .unwrap();
    let after = exec("mytool; cat /etc/operator-marker").await;
    assert!(after.contains("tool-ok"), "after an update: {after}");
    assert!(
        !after.contains(&marker),
        "the update moved it off the image: {after}"
    );
    // "workstation" moves it back onto the current workstation image, the install kept.
    ops.invoke(
        &owner,
        "instance_update",
        json!({ "name": name, "image": "workstation" }),
    )
    .await
    .unwrap();
    let back = exec("mytool; cat /etc/operator-marker").await;
    assert!(
        back.contains("tool-ok") && back.contains(&marker),
        "back on the workstation image: {back}"
    );
    // The command line's build is in the feed too.
    let feed = ops
        .invoke(
            &owner,
            "activity_read",
            json!({ "limit": 200, "kind": "image.build" }),
        )
        .await
        .unwrap()
        .text;
    assert!(
        feed.contains(&format!("built {tag} from")),
        "operator image build is in the feed: {feed}"
    );
    remove_image(&tag).await;
}

#[tokio::test]
async fn a_failing_setup_line_is_named_with_its_output() {
    ensure_test_image().await;
    let marker = unique("fail");
    // The output (42-<marker>) differs from the line itself ($((6*7))-<marker>).
    let world = World::new(None, &config(&[&format!("echo $((6*7))-{marker}; exit 3")]));
    let out = tokio::time::timeout(Duration::from_secs(120), world.run(&["image", "build"], ""))
        .await
        .expect("the build ends");
    assert!(!out.success(), "{out:?}");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("Step 3/4 : RUN"), "{said}");
    assert!(
        said.contains(&format!("\n42-{marker}")),
        "the output's tail: {said}"
    );
    assert!(said.contains("non-zero code: 3"), "{said}");
}

/// The package path on a real Debian base: `packages` installs with apt-get during the build
/// (the build reaches the mirror through the host network; the instance itself has none), adds
/// user 1000, and an instance on the image runs the package's program as that user.
#[tokio::test]
async fn packages_are_installed_with_apt_on_a_debian_base() {
    let base = crate::support::docker::ensure_debian_image().await;
    let docker_section = |network: &str| {
        format!(
            "[docker]\nhost = \"\"\nimage = \"{base}\"\npackages = [\"jq\"]\nsetup = []\nnetwork = \"{network}\"\nmemory_mb = 256\n"
        )
    };
    let world = World::new(None, &docker_section("host"));
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        world.run(&["image", "build", "--force"], ""),
    )
    .await
    .expect("the build ends");
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("apt-get install"), "{}", out.stdout);
    let tag = out
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("operator-instance:"))
        .expect("the tag")
        .to_string();
    let name = unique("apt");
    let _cleanup = Cleanup(vec![name.clone()]);
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, &base);
        s.docker.packages = vec!["jq".into()];
    })
    .await;
    let ops = &in_process.core.ops;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    let created = ops
        .invoke(&owner, "instance_create", json!({ "name": name }))
        .await
        .unwrap();
    assert!(
        created.text.contains(&tag) || created.data.to_string().contains(&tag),
        "{}",
        created.text
    );
    let out = ops
        .invoke(
            &owner,
            "instance_exec",
            json!({ "name": name, "command": "echo '{\"a\":41}' | jq '.a + 1'; id -u; getent passwd 1000 | cut -d: -f1" }),
        )
        .await
        .unwrap()
        .text;
    assert!(
        out.contains("42") && out.contains("1000") && out.contains("agent"),
        "{out}"
    );
    remove_image(&tag).await;
}
