//! Instances against the real Docker engine, through the control surface.

use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptions};
use serde_json::json;

use operator::store::ActivityFilter;

use crate::fleet::Fleet;
use crate::support::docker::{Cleanup, TEST_IMAGE, docker, unique};

#[tokio::test]
async fn lifecycle_exec_files_restart_delete() {
    let fleet = Fleet::new().await;
    let name = unique("life");
    let _cleanup = Cleanup(vec![name.clone()]);

    let created = fleet
        .ok(
            "instance_create",
            json!({ "name": name, "tags": ["test"], "project": "film notes" }),
        )
        .await;
    assert_eq!(created.data["status"], "active", "{created:?}");

    let out = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo hello; id -u; pwd" }),
        )
        .await;
    assert_eq!(out.data["exit_code"], 0, "{out:?}");
    assert_eq!(out.data["output"], "hello\n1000\n/workspace\n");

    let failing = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo oops >&2; exit 3" }),
        )
        .await;
    assert_eq!(failing.data["exit_code"], 3);
    assert!(failing.text.contains("oops"), "{}", failing.text);

    fleet
        .ok(
            "file_write",
            json!({ "instance": name, "path": "notes/plan.md", "content": "it's a plan\n" }),
        )
        .await;
    let read = fleet
        .ok(
            "file_read",
            json!({ "instance": name, "path": "notes/plan.md" }),
        )
        .await;
    assert_eq!(read.data["content"], "it's a plan\n");

    let restarted = fleet
        .ok("instance_restart", json!({ "targets": [name] }))
        .await;
    assert!(
        restarted.text.starts_with("1 of 1 restarted"),
        "{}",
        restarted.text
    );
    let read = fleet
        .ok(
            "file_read",
            json!({ "instance": name, "path": "/workspace/notes/plan.md" }),
        )
        .await;
    assert_eq!(
        read.data["content"], "it's a plan\n",
        "the workspace survives a restart"
    );
    let listing = fleet
        .ok("file_list", json!({ "instance": name, "path": "notes" }))
        .await;
    assert!(listing.text.contains("plan.md"), "{}", listing.text);

    let list = fleet.ok("instance_list", json!({})).await;
    assert!(
        list.text.contains(&format!("{name} active")),
        "{}",
        list.text
    );
    assert!(list.text.contains("film notes"), "{}", list.text);

    fleet
        .ok("instance_logs", json!({ "name": name, "tail": 10 }))
        .await;
    fleet.ok("instance_delete", json!({ "name": name })).await;
    let gone = docker()
        .await
        .inspect_container(&format!("operator-{name}"), None::<InspectContainerOptions>)
        .await;
    assert!(gone.is_err(), "the container is removed");
    assert!(
        docker()
            .await
            .inspect_volume(&format!("operator-{name}-workspace"))
            .await
            .is_err(),
        "and its volume"
    );

    let filter = ActivityFilter {
        limit: 100,
        ..Default::default()
    };
    let kinds: Vec<String> = fleet
        .core
        .store
        .activity(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in [
        "op.instance_create",
        "op.instance_exec",
        "op.file_write",
        "op.file_read",
        "op.instance_restart",
        "op.instance_delete",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn containers_are_hardened() {
    let fleet = Fleet::new().await;
    let name = unique("hard");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;

    let info = docker()
        .await
        .inspect_container(&format!("operator-{name}"), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = info.host_config.unwrap();
    let config = info.config.unwrap();
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert!(host.cap_add.unwrap_or_default().is_empty());
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert!(
        host.security_opt
            .unwrap()
            .iter()
            .any(|o| o.starts_with("no-new-privileges"))
    );
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    let tmpfs = host.tmpfs.unwrap();
    assert!(tmpfs.contains_key("/tmp") && tmpfs.contains_key("/run"));
    let log = host.log_config.unwrap();
    assert_eq!(
        log.config.unwrap().get("max-size").map(String::as_str),
        Some("10m")
    );
    assert_eq!(config.user.as_deref(), Some("1000:1000"));
    assert_eq!(config.labels.as_ref().unwrap()["operator.managed"], "true");
    assert_eq!(config.labels.as_ref().unwrap()["operator.instance"], name);
    // One mount: the workspace volume. No bind mounts, no Docker socket.
    assert!(host.binds.unwrap_or_default().is_empty());
    let mounts = info.mounts.unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].destination.as_deref(), Some("/workspace"));
    assert_eq!(
        mounts[0].name.as_deref(),
        Some(format!("operator-{name}-workspace").as_str())
    );

    // The root filesystem really is read-only, and the user really is not root.
    let out = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "touch /etc/x 2>&1; touch /tmp/ok && echo tmp-ok" }),
        )
        .await;
    assert!(out.text.contains("Read-only file system"), "{}", out.text);
    assert!(out.text.contains("tmp-ok"), "{}", out.text);
}

#[tokio::test]
async fn limits_hold_timeouts_kill_and_output_is_capped() {
    let fleet = Fleet::new().await;
    let name = unique("lim");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;

    let slow = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "sleep 30; echo never", "timeout_secs": 2 }),
        )
        .await;
    assert_eq!(slow.data["timed_out"], true, "{slow:?}");
    assert!(slow.text.contains("timed out after 2s"), "{}", slow.text);
    assert!(!slow.text.contains("never"));

    let huge = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "yes | head -c 1000000", "output_cap": 1000 }),
        )
        .await;
    assert_eq!(huge.data["output"].as_str().unwrap().len(), 1000);
    assert_eq!(huge.data["dropped_bytes"], 999_000);
    assert!(
        huge.text
            .contains("[output cut: 999000 more bytes not shown]"),
        "{}",
        huge.text
    );

    // A fork bomb meets the pids limit; the daemon keeps answering, and a restart clears it.
    let bomb = fleet
        .op(
            "instance_exec",
            json!({ "name": name, "command": "b() { b | b & }; b", "timeout_secs": 5 }),
        )
        .await;
    drop(bomb);
    let pids = docker()
        .await
        .inspect_container(&format!("operator-{name}"), None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap()
        .pids_limit;
    assert_eq!(pids, Some(64));
    let status = fleet.ok("status", json!({})).await;
    assert!(status.text.contains("operator"), "the daemon still answers");
    fleet
        .ok("instance_restart", json!({ "targets": [name] }))
        .await;
    let alive = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo alive" }),
        )
        .await;
    assert_eq!(alive.data["output"], "alive\n");
}

#[tokio::test]
async fn a_container_removed_behind_our_back_is_missing_then_recreated() {
    let fleet = Fleet::new().await;
    let name = unique("gone");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;
    fleet
        .ok(
            "file_write",
            json!({ "instance": name, "path": "keep.txt", "content": "still here" }),
        )
        .await;

    let force = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker()
        .await
        .remove_container(&format!("operator-{name}"), Some(force))
        .await
        .unwrap();
    let list = fleet.ok("instance_list", json!({})).await;
    assert!(
        list.text.contains(&format!("{name} missing")),
        "{}",
        list.text
    );

    let started = fleet
        .ok("instance_start", json!({ "targets": [name] }))
        .await;
    assert!(
        started.text.starts_with("1 of 1 started"),
        "{}",
        started.text
    );
    let read = fleet
        .ok("file_read", json!({ "instance": name, "path": "keep.txt" }))
        .await;
    assert_eq!(read.data["content"], "still here");
}

#[tokio::test]
async fn a_fleet_restart_by_tag_reports_each_instance() {
    let fleet = Fleet::new().await;
    let names: Vec<String> = (0..3).map(|_| unique("night")).collect();
    let _cleanup = Cleanup(names.clone());
    let tag = unique("nightly");
    for name in &names {
        fleet
            .ok("instance_create", json!({ "name": name, "tags": [tag] }))
            .await;
    }
    let out = fleet.ok("instance_restart", json!({ "tag": tag })).await;
    assert!(out.text.starts_with("3 of 3 restarted"), "{}", out.text);
    let results = out.data["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r["ok"] == true));
}

#[tokio::test]
async fn an_unreachable_engine_is_a_clear_error() {
    let fleet = Fleet::with_host("unix:///nonexistent/docker.sock").await;
    let err = fleet
        .op("instance_create", json!({ "name": unique("nope") }))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Docker engine is unreachable"),
        "{err}"
    );
    // Asked again while the engine waits out its failure: the same reason, at once.
    let again = fleet
        .op("instance_create", json!({ "name": unique("nope") }))
        .await
        .unwrap_err();
    assert!(
        again.to_string().contains("default is not answering")
            && again.to_string().contains("/nonexistent/docker.sock"),
        "{again}"
    );
    // The rest of the daemon keeps working.
    let status = fleet.ok("status", json!({})).await;
    assert!(status.text.contains("operator"));
    let list = fleet.ok("instance_list", json!({})).await;
    assert!(list.text.contains("instance(s)"));
}

#[tokio::test]
async fn a_missing_image_names_the_image() {
    let fleet = Fleet::new().await;
    let name = unique("img");
    let _cleanup = Cleanup(vec![name.clone()]);
    let err = fleet
        .op(
            "instance_create",
            json!({ "name": name, "image": "no-such-registry.invalid/nothing:1" }),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no-such-registry.invalid/nothing:1"),
        "{err}"
    );
    let list = fleet.ok("instance_list", json!({})).await;
    assert!(
        list.text.contains(&format!("{name} failed")),
        "{}",
        list.text
    );
}

#[tokio::test]
async fn settings_change_recreates_and_clone_copies_the_workspace() {
    let fleet = Fleet::new().await;
    let name = unique("upd");
    let twin = unique("twin");
    let _cleanup = Cleanup(vec![name.clone(), twin.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;
    fleet
        .ok(
            "file_write",
            json!({ "instance": name, "path": "data/keep.txt", "content": "precious" }),
        )
        .await;

    let tagged = fleet
        .ok(
            "instance_update",
            json!({ "name": name, "tags": ["Blue", "blue", "green"] }),
        )
        .await;
    assert_eq!(tagged.text, format!("Updated instance {name}."));
    assert_eq!(tagged.data["tags"], json!(["blue", "green"]));

    let updated = fleet
        .ok(
            "instance_update",
            json!({ "name": name, "memory_mb": 384, "cpus": 0.25 }),
        )
        .await;
    assert!(
        updated.text.contains("Recreated") && updated.text.contains("/workspace was kept"),
        "{}",
        updated.text
    );
    let host = docker()
        .await
        .inspect_container(&format!("operator-{name}"), None::<InspectContainerOptions>)
        .await
        .unwrap()
        .host_config
        .unwrap();
    assert_eq!(host.memory, Some(384 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(250_000_000));
    let read = fleet
        .ok(
            "file_read",
            json!({ "instance": name, "path": "data/keep.txt" }),
        )
        .await;
    assert_eq!(read.data["content"], "precious");
    let shown = fleet.ok("instance_settings", json!({ "name": name })).await;
    assert!(shown.text.contains("384 MiB"), "{}", shown.text);

    let bad = fleet
        .op(
            "instance_update",
            json!({ "name": name, "network": "host" }),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("not allowed"), "{bad}");

    let cloned = fleet
        .ok("instance_clone", json!({ "name": name, "new_name": twin }))
        .await;
    assert!(
        cloned.text.contains(&format!("a copy of {name}'s")),
        "{}",
        cloned.text
    );
    let copy = fleet
        .ok(
            "file_read",
            json!({ "instance": twin, "path": "data/keep.txt" }),
        )
        .await;
    assert_eq!(copy.data["content"], "precious");
    fleet
        .ok(
            "file_write",
            json!({ "instance": twin, "path": "data/keep.txt", "content": "changed" }),
        )
        .await;
    let original = fleet
        .ok(
            "file_read",
            json!({ "instance": name, "path": "data/keep.txt" }),
        )
        .await;
    assert_eq!(
        original.data["content"], "precious",
        "the clone is a copy, not a share"
    );
}

#[tokio::test]
async fn labelled_containers_unknown_to_the_database_are_reported() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::CreateContainerOptions;

    let fleet = Fleet::new().await;
    let stray = unique("stray");
    let _cleanup = Cleanup(vec![stray.clone()]);
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.into()),
        cmd: Some(vec!["true".into()]),
        labels: Some(
            [
                ("operator.managed".to_string(), "true".to_string()),
                ("operator.instance".to_string(), stray.clone()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(format!("operator-{stray}")),
        ..Default::default()
    };
    docker()
        .await
        .create_container(Some(options), body)
        .await
        .unwrap();
    let list = fleet.ok("instance_list", json!({})).await;
    assert!(
        list.data["unknown_containers"]
            .as_array()
            .unwrap()
            .contains(&json!(stray)),
        "{}",
        list.text
    );
    assert!(list.text.contains("unknown here"), "{}", list.text);
}
