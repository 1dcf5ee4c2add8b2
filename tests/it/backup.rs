//! Backup, restore and export through the real binary: a backup taken while messages flow
//! restores into a new state directory that answers as before; damaged, cut short and newer
//! archives are refused with nothing written; conversations export as Markdown and JSON lines.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::stop;
use crate::support::telegram::FakeTelegram;
use crate::support::{FakeLlm, Vendor, World};

const SECRET_VALUE: &str = "bk-canary-6f1e2d3c4b5a";

/// A state with a conversation, a secret and an agent, made through the console.
async fn populated(llm: &FakeLlm, extra: &str) -> World {
    let world = World::new(Some(llm), extra);
    llm.reply_tool_calls(&[("c1", "agent_create", r#"{"name":"archivist"}"#)]);
    llm.reply_text("Archivist is ready.");
    let out = world
        .chat(&[
            &format!("/secret BK_TOKEN {SECRET_VALUE}"),
            "make an archivist",
        ])
        .await;
    assert!(out.stdout.contains("Archivist is ready."), "{out:?}");
    world
}

/// Unpacks an archive into (name, bytes) members, in order.
fn members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Writes members back as an archive.
fn repack(members: &[(String, Vec<u8>)], to: &Path) {
    let file = std::fs::File::create(to).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

async fn backup(world: &World, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["backup", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let done = world.run(&args, "").await;
    assert!(done.success(), "{done:?}");
    done.stdout
}

async fn restore(world: &World, archive: &Path, state: &Path) -> crate::support::process::Finished {
    world
        .run(
            &[
                "restore",
                archive.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
            ],
            "",
        )
        .await
}

/// A backup taken while a bot answers a flood restores into a new state directory: the same
/// agents, conversations and secrets (readable with the key that came along), and a daemon on
/// it goes on with the old conversation.
#[tokio::test]
async fn a_backup_taken_under_load_restores_and_answers_as_before() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let tg = FakeTelegram::start().await;
    let world = populated(
        &llm,
        &tg.config("owners = [111]\ndm_policy = \"open\"\nstreaming = \"off\"\nmessages_per_second = 10000.0\nchat_messages_per_second = 10000.0\n"),
    )
    .await;
    llm.echo();
    let daemon = world.daemon(&[]);
    for i in 0..200u64 {
        tg.direct(9000 + i % 20, &format!("flowing {i}"));
    }
    tg.wait_sends(20, Duration::from_secs(30)).await;
    let archive = world.path().join("under-load.tar.gz");
    let said = backup(&world, &archive, &["--include-key"]).await;
    assert!(said.contains("backup written to"), "{said}");
    assert!(said.contains("INSIDE this archive"), "{said}");
    let done = tg.wait_sends(200, Duration::from_secs(60)).await;
    let log = stop(daemon).await;
    assert!(done, "{}\n{log}", tg.accepted_sends());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "an archive with the key is the owner's alone");

    let fresh = World::new(Some(&llm), "");
    let state = fresh.path().join("state");
    let restored = restore(&world, &archive, &state).await;
    assert!(restored.success(), "{restored:?}");
    assert!(restored.stdout.contains("restored"), "{restored:?}");
    // The secret opens with the key that came along.
    let store = operator::store::Store::open(&state).await.unwrap();
    let key = operator::secrets::MasterKey::read(&state.join("master.key")).unwrap();
    let secret = store
        .list_secrets()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "BK_TOKEN")
        .expect("the secret came back");
    let value = key
        .open(&secret.name, &secret.sealed, &secret.key_id)
        .unwrap();
    assert_eq!(value, SECRET_VALUE.as_bytes());
    assert!(store.agent("archivist").await.is_ok());
    store.close().await;
    // A daemon on the restored state goes on with the console's conversation.
    llm.reply_text("I remember.");
    let out = fresh.chat(&["do you remember?"]).await;
    assert!(out.stdout.contains("I remember."), "{out:?}");
    let history = llm.completions().last().unwrap().body.to_string();
    assert!(history.contains("make an archivist"), "{history}");
    assert!(
        !history.contains(SECRET_VALUE),
        "secret values never reach a model"
    );
}

/// Damaged, cut short, newer, or into a state directory that is not empty: refused, with a
/// clear reason and nothing written.
#[tokio::test]
async fn damaged_truncated_and_newer_archives_are_refused() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = populated(&llm, "").await;
    let archive = world.path().join("good.tar.gz");
    let said = backup(&world, &archive, &[]).await;
    assert!(said.contains("is not included"), "{said}");
    let good = members(&archive);
    let names: Vec<&str> = good.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["operator.db", "manifest.json"],
        "no key unless asked"
    );
    let manifest: Value = serde_json::from_slice(&good[1].1).unwrap();
    assert_eq!(manifest["format"], 1);
    assert!(
        manifest["tables"]["messages"].as_i64().unwrap() >= 3,
        "{manifest}"
    );
    assert!(manifest["key_fingerprint"].is_string(), "{manifest}");
    assert_eq!(manifest["members"][0]["name"], "operator.db");

    let cases: Vec<(&str, PathBuf, &str)> = {
        let truncated = world.path().join("truncated.tar.gz");
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

        let damaged = world.path().join("damaged.tar.gz");
        let mut changed = good.clone();
        let db = &mut changed[0].1;
        let at = db.len() / 2;
        db[at] ^= 0xff;
        repack(&changed, &damaged);

        let newer = world.path().join("newer.tar.gz");
        let mut changed = good.clone();
        let mut m = manifest.clone();
        m["format"] = json!(99);
        changed[1].1 = serde_json::to_vec(&m).unwrap();
        repack(&changed, &newer);

        let smuggled = world.path().join("smuggled.tar.gz");
        let mut changed = good.clone();
        changed.insert(1, ("master.key".into(), b"00".repeat(32)));
        repack(&changed, &smuggled);
        vec![
            ("truncated", truncated, "damaged or cut short"),
            ("damaged", damaged, "does not match its checksum"),
            ("newer", newer, "newer than this operator"),
            ("smuggled", smuggled, "does not list"),
        ]
    };
    for (what, file, reason) in cases {
        let state = world.path().join(format!("restored-{what}"));
        let out = restore(&world, &file, &state).await;
        assert!(!out.success(), "{what}: {out:?}");
        assert!(out.stderr.contains(reason), "{what}: {}", out.stderr);
        assert!(!state.exists(), "{what}: nothing is written");
        let leftovers: Vec<_> = std::fs::read_dir(world.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".operator-restore")
            })
            .collect();
        assert!(leftovers.is_empty(), "{what}: scratch left behind");
    }
    let busy = world.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let out = restore(&world, &archive, &busy).await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("is not empty (it holds notes.txt)"),
        "{}",
        out.stderr
    );
    // Without the key, the restore says which key the secrets need, and so does `check`.
    let keyless = World::new(None, "");
    let state = keyless.path().join("state");
    let out = restore(&world, &archive, &state).await;
    assert!(out.success(), "{out:?}");
    let fingerprint = manifest["key_fingerprint"].as_str().unwrap();
    assert!(out.stdout.contains(fingerprint), "{}", out.stdout);
    assert!(!state.join("master.key").exists());
    let check = keyless.run(&["check"], "").await;
    assert!(
        check.stdout.contains(&format!(
            "sealed with master key {fingerprint}, but there is no key"
        )),
        "{}",
        check.stdout
    );
}

/// `/export` sends the conversation as a Markdown file; the API serves it as Markdown and as
/// JSON lines, and refuses an unknown format.
#[tokio::test]
async fn conversations_export_as_markdown_and_json_lines() {
    use crate::support::inproc::{core, serve};
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("The answer is 42.");
    let world = World::new(Some(&llm), "");
    let out = world.chat(&["what is the answer?", "/export"]).await;
    assert!(out.success(), "{out:?}");
    let saved = out
        .stdout
        .split("saved to ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let markdown = std::fs::read_to_string(saved).unwrap();
    assert!(
        markdown.starts_with("# Conversation with operator"),
        "{markdown}"
    );
    assert!(markdown.contains("what is the answer?"), "{markdown}");
    assert!(markdown.contains("The answer is 42."), "{markdown}");

    const TOKEN: &str = "export-api-token";
    llm.reply_text("Exported soon.");
    let world = core(Some(&llm), |_| {}).await;
    let served = serve(&world.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let http = reqwest::Client::new();
    let chat: Value = http
        .post(served.url("/api/chat"))
        .bearer_auth(TOKEN)
        .json(&json!({ "message": "export me" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = world
        .core
        .store
        .open_conversation(
            &operator::domain::ChatRef::new("http", chat["conversation"].as_str().unwrap()),
            "operator",
        )
        .await
        .unwrap()
        .id;
    let get = |format: &str| {
        http.get(served.url(&format!("/api/conversations/{id}/export?format={format}")))
            .bearer_auth(TOKEN)
            .send()
    };
    let md = get("md").await.unwrap();
    assert_eq!(md.status(), 200);
    assert!(
        md.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".md")
    );
    assert!(md.text().await.unwrap().contains("Exported soon."));
    let lines = get("jsonl").await.unwrap().text().await.unwrap();
    let rows: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{lines}");
    assert_eq!(rows[0]["role"], "user");
    assert_eq!(rows[1]["content"], "Exported soon.");
    assert_eq!(get("pdf").await.unwrap().status(), 400);
    let missing = http
        .get(served.url("/api/conversations/999999/export"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

/// `/backup` (an owner's) writes a backup into `[backup] dir` now, keeps the newest `keep`,
/// and the activity feed records each.
#[tokio::test]
async fn backup_in_chat_writes_into_the_backup_dir_and_keeps_the_newest() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let dir = tempfile::tempdir().unwrap();
    let world = World::new(
        Some(&llm),
        &format!(
            "[backup]\ndir = {:?}\nkeep = 2\n",
            dir.path().display().to_string()
        ),
    );
    let out = world.chat(&["/backup", "/backup", "/backup"]).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout.matches("backup written to").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 older backups removed"),
        "{}",
        out.stdout
    );
    let kept: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(
        kept.iter()
            .all(|n| n.starts_with("operator-backup-") && n.ends_with(".tar.gz"))
    );
    let store = operator::store::Store::open(&world.path().join("state"))
        .await
        .unwrap();
    let done = store
        .activity(&operator::store::ActivityFilter {
            limit: 50,
            kind_prefix: Some("backup.".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    store.close().await;
    assert_eq!(done.len(), 3, "{done:?}");
    assert!(done.iter().all(|e| e.kind == "backup.done"), "{done:?}");
}

/// With `--workspaces`, a file written in an instance comes back after a restore onto a clean
/// engine: the workspace fills a new volume there and the container is made from its record.
#[tokio::test]
async fn workspaces_come_back_on_a_clean_engine() {
    use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};
    use crate::support::engine::Engine;
    use crate::support::llm::tool_results;

    ensure_test_image().await;
    let name = unique("keeper");
    let _cleanup = Cleanup(vec![name.clone()]);
    let docker = |host: &str| {
        format!(
            "[docker]\nhost = {host:?}\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
        )
    };
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let world = World::new(Some(&llm), &docker(""));
    llm.reply_tool_calls(&[(
        "c1",
        "instance_create",
        &json!({ "name": name }).to_string(),
    )]);
    llm.reply_tool_calls(&[(
        "c2",
        "file_write",
        &json!({ "instance": name, "path": "notes/kept.txt", "content": "written before the backup" })
            .to_string(),
    )]);
    llm.reply_text("Written.");
    let out = world.chat(&["make an instance and write a note"]).await;
    assert!(out.stdout.contains("Written."), "{out:?}");
    let archive = world.path().join("with-workspaces.tar.gz");
    let said = backup(&world, &archive, &["--workspaces"]).await;
    assert!(said.contains("1 workspaces"), "{said}");
    assert!(
        members(&archive)
            .iter()
            .any(|(n, _)| *n == format!("workspaces/{name}.tar")),
        "the workspace is a member"
    );

    let engine = Engine::start(false).await;
    let clean = World::new(Some(&llm), &docker(&engine.unix_endpoint()));
    let state = clean.path().join("state");
    let restored = restore(&clean, &archive, &state).await;
    assert!(restored.success(), "{restored:?}");
    assert!(
        restored
            .stdout
            .contains(&format!("workspace of {name} restored")),
        "{}",
        restored.stdout
    );
    assert!(
        engine.container(&name).await.is_some(),
        "the container was made"
    );
    llm.reply_tool_calls(&[(
        "c3",
        "file_read",
        &json!({ "instance": name, "path": "notes/kept.txt" }).to_string(),
    )]);
    llm.reply_text("Read it.");
    let out = clean.chat(&["read the note"]).await;
    assert!(out.stdout.contains("Read it."), "{out:?}");
    let results = tool_results(&llm.completions().last().unwrap().body);
    assert!(
        results
            .last()
            .is_some_and(|r| r.contains("written before the backup")),
        "{results:?}"
    );
}
