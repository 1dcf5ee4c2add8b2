//! A fleet over two real Docker engines on this machine: the main one and a second `dockerd`
//! with its own socket and data root (over TCP with TLS client certificates in the first test).
//! Instances are placed by label, capacity and name; every operation goes to the right engine;
//! an engine that stops leaves its instances `unreachable` while the other keeps working, and
//! they come back intact; an instance moves between engines with its files.

use std::collections::BTreeMap;
use std::time::Duration;

use operator::config::DockerHostSettings;
use serde_json::{Value, json};

use crate::fleet::Fleet;
use crate::support::docker::{Cleanup, container_state, docker, unique};
use crate::support::engine::Engine;

const WAIT: Duration = Duration::from_secs(90);

fn host(
    name: &str,
    endpoint: &str,
    labels: &[(&str, &str)],
    capacity: Option<u32>,
) -> DockerHostSettings {
    let mut host = DockerHostSettings::new(name, endpoint);
    host.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    host.capacity_instances = capacity;
    host
}

/// Whether the main engine has a container for this instance, and whether it runs.
async fn on_main(instance: &str) -> Option<bool> {
    container_state(&docker().await, instance).await
}

/// Reads a file of an instance through the control surface.
async fn read(fleet: &Fleet, instance: &str, path: &str) -> String {
    fleet
        .ok("file_read", json!({ "instance": instance, "path": path }))
        .await
        .text
}

fn host_of(list: &Value, name: &str) -> (String, String) {
    let instance = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {list}"));
    (
        instance["host"].as_str().unwrap().to_string(),
        instance["status"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn instances_are_placed_on_two_engines_and_operations_follow_them() {
    let engine = Engine::start(true).await;
    let tls = engine.tls.as_ref().unwrap();
    let mut b = host(
        "b",
        &tls.address,
        &[("region", "us"), ("gpu", "yes")],
        Some(3),
    );
    b.tls_ca = Some(tls.ca.clone());
    b.tls_cert = Some(tls.cert.clone());
    b.tls_key = Some(tls.key.clone());
    let a = host(
        "a",
        "unix:///var/run/docker.sock",
        &[("region", "eu")],
        Some(1),
    );
    let fleet = Fleet::with_hosts(vec![a, b]).await;
    let [gpu, spread, eu, last, extra] = ["gpu", "spread", "eu", "last", "extra"].map(unique);
    let _cleanup = Cleanup(vec![eu.clone()]);

    // By label: the only host with a GPU.
    let out = fleet
        .ok(
            "instance_create",
            json!({ "name": gpu, "labels": { "gpu": "yes" } }),
        )
        .await;
    assert_eq!(out.data["host"], "b", "{}", out.text);
    // Anywhere: a would be full (1 of 1), b a third full (2 of 3): b.
    let out = fleet.ok("instance_create", json!({ "name": spread })).await;
    assert_eq!(out.data["host"], "b");
    // By label again: the European host.
    let out = fleet
        .ok(
            "instance_create",
            json!({ "name": eu, "labels": { "region": "eu" } }),
        )
        .await;
    assert_eq!(out.data["host"], "a");
    // a is full now: the next goes to b, and then nothing fits.
    let out = fleet.ok("instance_create", json!({ "name": last })).await;
    assert_eq!(out.data["host"], "b");
    let full = fleet
        .op("instance_create", json!({ "name": extra }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        full.contains("a is full") && full.contains("b is full"),
        "{full}"
    );
    let named = fleet
        .op("instance_create", json!({ "name": extra, "host": "c" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(named.contains("there is no host \"c\""), "{named}");

    // The containers are on the engines the instances say.
    assert_eq!(engine.container(&gpu).await, Some(true));
    assert_eq!(engine.container(&eu).await, None);
    assert_eq!(on_main(&eu).await, Some(true));
    assert_eq!(on_main(&gpu).await, None);

    // Operations go to each instance's engine.
    fleet
        .ok(
            "file_write",
            json!({ "instance": gpu, "path": "notes/where.txt", "content": "on b" }),
        )
        .await;
    assert_eq!(read(&fleet, &gpu, "notes/where.txt").await, "on b");
    let ran = fleet
        .ok(
            "instance_exec",
            json!({ "name": eu, "command": "echo from a" }),
        )
        .await;
    assert!(ran.text.contains("from a"), "{}", ran.text);
    fleet.ok("instance_stop", json!({ "targets": [gpu] })).await;
    assert_eq!(engine.container(&gpu).await, Some(false));
    assert_eq!(on_main(&eu).await, Some(true));

    // Listing shows each instance's host; host_list shows each host with what it holds.
    let list = fleet.ok("instance_list", json!({})).await;
    assert!(
        list.text.contains(&format!("{eu} active on a")),
        "{}",
        list.text
    );
    assert_eq!(host_of(&list.data, &gpu), ("b".into(), "stopped".into()));
    let hosts = fleet.ok("host_list", json!({})).await;
    assert!(
        hosts.text.starts_with("2 of 2 Docker host(s) answer"),
        "{}",
        hosts.text
    );
    assert!(hosts.text.contains("1 of 1 instances"), "{}", hosts.text);
    assert!(hosts.text.contains("3 of 3 instances"), "{}", hosts.text);
    assert!(hosts.text.contains("(TLS)"), "{}", hosts.text);

    // The admin page shows the hosts and each instance's host.
    let served = crate::support::inproc::serve(
        &fleet.core,
        Some(operator::http::api::token_hash(crate::admin::TOKEN)),
    )
    .await;
    let http = crate::admin::client();
    let session = crate::admin::login(
        &http,
        &served.url("/login"),
        &format!("http://{}", served.addr),
    )
    .await;
    let page = crate::admin::page_text(&http, &served.url("/instances"), &session).await;
    assert!(
        page.contains("<tr class=\"host\"><td>b</td>") && page.contains("<td>3 of 3</td>"),
        "{page}"
    );
    assert!(
        page.contains(&format!("<td>{eu}</td><td>active</td><td>a</td>")),
        "{page}"
    );
    let api: Value = crate::admin::api_get(&http, &served.url("/api/hosts"), crate::admin::TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let listed = api["data"]["hosts"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{api}");
    assert_eq!(listed[1]["instances"], 3, "{api}");
    assert_eq!(listed[1]["labels"]["gpu"], "yes", "{api}");

    // Deleting goes to the right engine too.
    for name in [&gpu, &spread, &last] {
        fleet.ok("instance_delete", json!({ "name": name })).await;
        assert_eq!(engine.container(name).await, None);
    }

    // Only the configured CA is trusted: the same engine checked against another CA is refused.
    let mut wrong = host("b", &tls.address, &[], None);
    wrong.tls_ca = Some(tls.other_ca.clone());
    wrong.tls_cert = Some(tls.cert.clone());
    wrong.tls_key = Some(tls.key.clone());
    let distrustful = Fleet::with_hosts(vec![wrong]).await;
    let hosts = distrustful.ok("host_list", json!({})).await;
    assert!(
        hosts.text.starts_with("0 of 1 Docker host(s) answer"),
        "{}",
        hosts.text
    );
    assert!(hosts.text.contains("certificate"), "{}", hosts.text);
}

/// Polls `instance_list` until `check` holds for the listing.
async fn wait_for_list(fleet: &Fleet, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = fleet.ok("instance_list", json!({})).await;
        if check(&list.data) {
            return list.data;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {}",
            list.text
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_stopped_engine_leaves_the_rest_working_and_instances_move_between_engines() {
    let mut engine = Engine::start(false).await;
    let a = host("a", "unix:///var/run/docker.sock", &[], None);
    let b = host("b", &engine.unix_endpoint(), &[], None);
    let fleet = Fleet::with_hosts(vec![a, b]).await;
    let [far, near] = ["far", "near"].map(unique);
    let _cleanup = Cleanup(vec![far.clone(), near.clone()]);
    fleet
        .ok("instance_create", json!({ "name": far, "host": "b" }))
        .await;
    fleet
        .ok("instance_create", json!({ "name": near, "host": "a" }))
        .await;
    fleet
        .ok(
            "file_write",
            json!({ "instance": far, "path": "keep/me.txt", "content": "survives" }),
        )
        .await;

    // The second engine stops: its instance is unreachable, not deleted; the other works.
    engine.stop();
    let list = wait_for_list(&fleet, "far is unreachable", |l| {
        host_of(l, &far).1 == "unreachable"
    })
    .await;
    assert_eq!(host_of(&list, &near), ("a".into(), "active".into()));
    let ran = fleet
        .ok(
            "instance_exec",
            json!({ "name": near, "command": "echo still here" }),
        )
        .await;
    assert!(ran.text.contains("still here"), "{}", ran.text);
    let refused = fleet
        .op("instance_exec", json!({ "name": far, "command": "true" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("host b"), "{refused}");
    let status = fleet.ok("status", json!({})).await;
    assert!(
        status.text.contains("docker host b: DOWN"),
        "{}",
        status.text
    );
    assert!(status.text.contains("docker host a: up"), "{}", status.text);

    let feed = fleet
        .ok("activity_read", json!({ "kind": "host.", "limit": 5 }))
        .await;
    assert!(
        feed.text.contains("host.down") && feed.text.contains("Docker host b does not answer"),
        "{}",
        feed.text
    );

    // It comes back: the instance is reachable again with its workspace.
    engine.restart().await;
    wait_for_list(&fleet, "far is active again", |l| {
        host_of(l, &far).1 == "active"
    })
    .await;
    assert_eq!(read(&fleet, &far, "keep/me.txt").await, "survives");
    let feed = fleet
        .ok("activity_read", json!({ "kind": "host.up", "limit": 5 }))
        .await;
    assert!(
        feed.text.contains("Docker host b answers again"),
        "{}",
        feed.text
    );

    // Moved to the main engine, files and all; nothing of it is left on the second.
    let moved = fleet
        .ok("instance_move", json!({ "name": far, "host": "a" }))
        .await;
    assert!(moved.text.contains("from b to a"), "{}", moved.text);
    assert_eq!(moved.data["host"], "a");
    assert_eq!(moved.data["status"], "active");
    assert_eq!(on_main(&far).await, Some(true));
    assert_eq!(engine.container(&far).await, None);
    assert_eq!(read(&fleet, &far, "keep/me.txt").await, "survives");
    let owner = fleet
        .ok("instance_exec", json!({ "name": far, "command": "stat -c %u:%g /workspace/keep/me.txt && touch /workspace/new" }))
        .await;
    assert!(owner.text.contains("1000:1000"), "{}", owner.text);
    let again = fleet
        .op("instance_move", json!({ "name": far, "host": "a" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(again.contains("already on a"), "{again}");

    // Something of the same name left on the target is neither replaced nor cleaned up.
    let leftover = format!("operator-{near}");
    engine
        .client()
        .await
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(leftover.clone()),
                ..Default::default()
            }),
            bollard::models::ContainerCreateBody {
                image: Some(crate::support::docker::TEST_IMAGE.into()),
                cmd: Some(vec!["true".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let refused = fleet
        .op("instance_move", json!({ "name": near, "host": "b" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("already has a container"), "{refused}");
    assert_eq!(engine.container(&near).await, Some(false));
    assert_eq!(on_main(&near).await, Some(true));
}

/// An engine reached over SSH (a private sshd on 127.0.0.1 forwarding to the main engine's
/// socket): instances are created, used and deleted through the tunnel; a host key that does not
/// match the known_hosts file is refused.
#[tokio::test]
async fn an_engine_over_ssh_runs_instances_and_a_wrong_host_key_is_refused() {
    use crate::support::sshd::Sshd;
    let sshd = Sshd::start().await;
    let endpoint = format!("ssh://{}@127.0.0.1:{}", Sshd::user(), sshd.port);
    let mut remote = host("remote", &endpoint, &[], None);
    remote.ssh_key = Some(sshd.key.clone());
    remote.ssh_known_hosts = Some(sshd.known_hosts.clone());
    let fleet = Fleet::with_hosts(vec![remote.clone()]).await;
    let name = unique("ssh");
    let _cleanup = Cleanup(vec![name.clone()]);
    let hosts = fleet.ok("host_list", json!({})).await;
    assert!(
        hosts.text.starts_with("1 of 1 Docker host(s) answer"),
        "{}",
        hosts.text
    );
    assert!(hosts.text.contains(&endpoint), "{}", hosts.text);
    let out = fleet.ok("instance_create", json!({ "name": name })).await;
    assert_eq!(out.data["host"], "remote");
    let ran = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo through ssh" }),
        )
        .await;
    assert!(ran.text.contains("through ssh"), "{}", ran.text);
    assert_eq!(on_main(&name).await, Some(true));
    fleet.ok("instance_delete", json!({ "name": name })).await;
    assert_eq!(on_main(&name).await, None);

    // The same server, but known_hosts holds another key: no connection, and nothing else
    // suffers for it.
    remote.ssh_known_hosts = Some(sshd.wrong_known_hosts.clone());
    let fleet = Fleet::with_hosts(vec![remote]).await;
    let hosts = fleet.ok("host_list", json!({})).await;
    assert!(
        hosts.text.starts_with("0 of 1 Docker host(s) answer"),
        "{}",
        hosts.text
    );
    assert!(
        hosts.text.contains("Host key verification failed"),
        "{}",
        hosts.text
    );
}
