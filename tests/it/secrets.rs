//! Secrets: a canary value reaches the commands it is granted to, and nothing else.

use std::path::Path;

use bollard::query_parameters::InspectContainerOptions;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::fleet::Fleet;
use crate::support::docker::{Cleanup, TEST_IMAGE, docker, ensure_test_image, unique};

fn canary() -> String {
    format!("canary-{:016x}", rand::random::<u64>())
}

fn sha256_line(value: &str) -> String {
    hex::encode(Sha256::digest(format!("{value}\n")))
}

/// Every byte of every file under `dir`, searched for `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn a_canary_reaches_granted_commands_only_and_is_never_written_down() {
    let fleet = Fleet::new().await;
    let (granted, other) = (unique("sec"), unique("nosec"));
    let _cleanup = Cleanup(vec![granted.clone(), other.clone()]);
    fleet
        .ok("instance_create", json!({ "name": granted }))
        .await;
    fleet.ok("instance_create", json!({ "name": other })).await;
    let value = canary();
    fleet
        .ok(
            "secret_create",
            json!({ "name": "CANARY", "value": value, "description": "test" }),
        )
        .await;
    fleet
        .ok(
            "secret_grant",
            json!({ "name": "CANARY", "instance": granted }),
        )
        .await;

    let probe =
        "env; tr '\\0' '\\n' < /proc/self/environ; echo $CANARY | base64; echo $CANARY | sha256sum";
    let out = fleet
        .ok(
            "instance_exec",
            json!({ "name": granted, "command": probe }),
        )
        .await;
    assert!(
        out.text.contains(&sha256_line(&value)),
        "the command saw the value: {}",
        out.text
    );
    assert!(
        !out.text.contains(&value) && !out.data.to_string().contains(&value),
        "{}",
        out.text
    );
    assert!(out.text.contains("CANARY=[secret:CANARY]"), "{}", out.text);

    let unset = "echo ${CANARY:-unset}";
    let elsewhere = fleet
        .ok("instance_exec", json!({ "name": other, "command": unset }))
        .await;
    assert_eq!(elsewhere.data["output"], "unset\n");

    let listed = fleet.ok("secret_list", json!({})).await;
    assert!(
        listed
            .text
            .contains(&format!("CANARY — instance:{granted}")),
        "{}",
        listed.text
    );

    fleet
        .ok(
            "secret_revoke",
            json!({ "name": "CANARY", "instance": granted }),
        )
        .await;
    let revoked = fleet
        .ok(
            "instance_exec",
            json!({ "name": granted, "command": unset }),
        )
        .await;
    assert_eq!(revoked.data["output"], "unset\n");

    let rotated = canary();
    fleet
        .ok(
            "secret_grant",
            json!({ "name": "CANARY", "instance": granted }),
        )
        .await;
    fleet
        .ok(
            "secret_rotate",
            json!({ "name": "CANARY", "value": rotated }),
        )
        .await;
    let out = fleet
        .ok(
            "instance_exec",
            json!({ "name": granted, "command": "echo $CANARY | sha256sum" }),
        )
        .await;
    assert!(
        out.text.contains(&sha256_line(&rotated)),
        "the next command sees the new value: {}",
        out.text
    );

    let inspect = docker()
        .await
        .inspect_container(
            &format!("operator-{granted}"),
            None::<InspectContainerOptions>,
        )
        .await
        .unwrap();
    let inspect = serde_json::to_string(&inspect).unwrap();
    assert!(
        !inspect.contains(&value) && !inspect.contains(&rotated),
        "docker inspect shows no value"
    );

    let activity = fleet
        .core
        .store
        .activity(&operator::store::ActivityFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let activity = serde_json::to_string(&activity).unwrap();
    assert!(
        !activity.contains(&value) && !activity.contains(&rotated),
        "{activity}"
    );
    assert!(activity.contains("op.secret_create"));

    fleet.core.store.close().await;
    for needle in [&value, &rotated] {
        let found = files_containing(fleet.state.path(), needle);
        assert!(found.is_empty(), "plaintext found in {found:?}");
    }
}

#[tokio::test]
async fn a_damaged_record_or_a_wrong_key_fails_closed_by_name() {
    let fleet = Fleet::new().await;
    let name = unique("lock");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;
    fleet
        .ok(
            "secret_create",
            json!({ "name": "LOCKED", "value": canary(), "global": true }),
        )
        .await;
    fleet
        .ok(
            "secret_create",
            json!({ "name": "FINE", "value": canary(), "global": true }),
        )
        .await;

    // Flip one byte of the sealed value on disk.
    let db = fleet.state.path().join("operator.db");
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let sealed: String = sqlx::query_scalar("SELECT sealed FROM secrets WHERE name = 'LOCKED'")
            .fetch_one(&pool)
            .await
            .unwrap();
        let mut bytes = hex::decode(&sealed).unwrap();
        bytes[40] ^= 0x01;
        sqlx::query("UPDATE secrets SET sealed = $1 WHERE name = 'LOCKED'")
            .bind(hex::encode(bytes))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let err = fleet
        .op("instance_exec", json!({ "name": name, "command": "true" }))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("secret LOCKED cannot be opened"),
        "{err}"
    );
    // The daemon keeps working.
    fleet.ok("secret_delete", json!({ "name": "LOCKED" })).await;
    let ok = fleet
        .ok(
            "instance_exec",
            json!({ "name": name, "command": "echo ${FINE:+present}" }),
        )
        .await;
    assert_eq!(ok.data["output"], "present\n");

    // Another master key: the record is refused, naming the secret and the key.
    std::fs::write(
        fleet.state.path().join("master.key"),
        format!("{}\n", hex::encode([7u8; 32])),
    )
    .unwrap();
    let settings = {
        let mut s = operator::config::Settings::defaults();
        s.state.dir = Some(fleet.state.path().to_path_buf());
        s.docker.image = TEST_IMAGE.into();
        s.docker.packages.clear();
        s
    };
    ensure_test_image().await;
    let other = operator::app::build(&settings, Vec::new()).await.unwrap();
    let err = other
        .ops
        .invoke(
            &operator::ops::Invocation::new(operator::domain::Caller::owner("t")),
            "instance_exec",
            json!({ "name": name, "command": "true" }),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("secret FINE was sealed under another master key"),
        "{err}"
    );
}

/// The whole path: a person sends the value with /secret, Operator grants it by name, the agent
/// runs commands that print it, and a model reply that repeats it. The value appears in none of
/// the model requests, the chat output, the logs, or the state directory's files.
#[tokio::test]
async fn a_canary_sent_in_chat_never_leaves_through_any_face() {
    use crate::support::process::{BIN, run_with_timeout};
    use crate::support::{FakeLlm, Vendor, World};

    ensure_test_image().await;
    let agent = unique("spy");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let value = canary();
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[("c1", "agent_create", &json!({ "name": agent }).to_string())]);
    llm.reply_text("Spy ready.");
    llm.reply_tool_calls(&[(
        "c2",
        "secret_grant",
        &json!({ "name": "CANARY", "instance": agent }).to_string(),
    )]);
    llm.reply_text("Granted.");
    llm.reply_tool_calls(&[(
        "c3",
        "run_command",
        r#"{"command":"env; tr '\\0' '\\n' < /proc/self/environ; echo $CANARY | base64"}"#,
    )]);
    // A model that repeats the value anyway (it never saw it; this is the worst case).
    llm.reply_text(&format!("The canary is {value}."));
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(Some(&llm), &docker);
    let input = format!(
        "/secret CANARY {value}\nmake a spy agent\ngive it the canary\n/use {agent}\nprint your environment and repeat the canary\n"
    );
    let mut shell = tokio::process::Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "OPERATOR_LOG=debug exec {BIN} chat --config {}",
            world.config.display()
        ))
        .current_dir(world.path());
    let out = run_with_timeout(shell, &input).await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("Stored secret CANARY (encrypted)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("The canary is [secret:CANARY]."),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&value), "chat output: {}", out.stdout);
    assert!(!out.stderr.contains(&value), "logs: {}", out.stderr);

    let requests = llm.completions();
    assert_eq!(requests.len(), 6, "every scripted reply was used");
    let tool_result = requests[5].body.to_string();
    assert!(
        tool_result.contains("CANARY=[secret:CANARY]"),
        "{tool_result}"
    );
    for request in &requests {
        let body = request.body.to_string();
        assert!(
            !body.contains(&value),
            "a model request carried the value: {body}"
        );
        let b64 = base64_prefix(&value);
        assert!(
            !body.contains(&b64),
            "a model request carried its base64: {body}"
        );
    }
    let found = files_containing(&world.path().join("state"), &value);
    assert!(found.is_empty(), "plaintext found in {found:?}");
}

/// The base64 characters of a value that do not depend on what follows it.
fn base64_prefix(value: &str) -> String {
    use base64::Engine;
    let whole = value.len() / 3 * 3;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(&value.as_bytes()[..whole])
}

#[tokio::test]
async fn rotate_key_reseals_every_secret_under_a_new_key() {
    use crate::support::process::{BIN, run_with_timeout};
    use operator::secrets::MasterKey;

    let fleet = Fleet::new().await;
    let (a, b) = (canary(), canary());
    fleet
        .ok("secret_create", json!({ "name": "ALPHA", "value": a }))
        .await;
    fleet
        .ok(
            "secret_create",
            json!({ "name": "BETA", "value": b, "global": true }),
        )
        .await;
    let key_path = fleet.state.path().join("master.key");
    let before = MasterKey::read(&key_path).unwrap();

    let config = fleet.state.path().join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = {:?}\n",
            fleet.state.path().display().to_string()
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["secrets", "rotate-key", "--config"])
        .arg(&config);
    let out = run_with_timeout(command, "").await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("re-sealed 2 secret(s)"),
        "{}",
        out.stdout
    );

    let after = MasterKey::read(&key_path).unwrap();
    assert_ne!(before.fingerprint(), after.fingerprint());
    assert!(!fleet.state.path().join("master.key.new").exists());
    for (name, value) in [("ALPHA", &a), ("BETA", &b)] {
        let record = fleet.core.store.secret(name).await.unwrap();
        assert_eq!(record.key_id, after.fingerprint());
        assert_eq!(
            after.open(name, &record.sealed, &record.key_id).unwrap(),
            value.as_bytes()
        );
        assert!(
            before.open(name, &record.sealed, &record.key_id).is_err(),
            "the old key no longer opens it"
        );
    }

    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["secrets", "rotate-key", "--out", "/tmp/x.key", "--config"])
        .arg(&config);
    let refused = run_with_timeout(command, "").await;
    assert!(!refused.success());
    assert!(
        refused
            .stderr
            .contains("--out is only for a key held in a systemd credential"),
        "{}",
        refused.stderr
    );
}
