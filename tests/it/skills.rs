//! Skills: write, preview, install on two instances, update, uninstall; the agent's prompt;
//! import from disk.

use serde_json::json;

use crate::fleet::Fleet;
use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};

fn skill_md(name: &str, description: &str, body: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\nlicense: MIT\n---\n{body}\n")
}

#[tokio::test]
async fn write_preview_install_update_uninstall_across_two_instances() {
    let fleet = Fleet::new().await;
    let (a, b) = (unique("ska"), unique("skb"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    fleet.ok("instance_create", json!({ "name": a })).await;
    fleet.ok("instance_create", json!({ "name": b })).await;

    let bad = fleet
        .op(
            "skill_write",
            json!({ "name": "digest", "skill_md": skill_md("other", "x", "body") }),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("field `name` (line 2)"), "{bad}");
    let none = fleet.ok("skill_list", json!({})).await;
    assert!(
        none.text.starts_with("0 skill(s)"),
        "an invalid skill is never stored: {}",
        none.text
    );

    let v1 = skill_md(
        "digest",
        "Summarize recent commits.",
        "Run scripts/log.sh and summarize.",
    );
    let files = json!({ "scripts/log.sh": "git log --oneline -20\n" });
    let written = fleet
        .ok(
            "skill_write",
            json!({ "name": "digest", "skill_md": v1, "files": files }),
        )
        .await;
    assert!(
        written
            .text
            .starts_with("Saved skill digest version 1 (2 file(s)"),
        "{}",
        written.text
    );
    let again = fleet
        .ok(
            "skill_write",
            json!({ "name": "digest", "skill_md": v1, "files": files }),
        )
        .await;
    assert!(
        again.text.starts_with("Unchanged: skill digest version 1"),
        "{}",
        again.text
    );

    let preview = fleet
        .ok(
            "skill_preview",
            json!({ "name": "digest", "instances": [a, b] }),
        )
        .await;
    assert!(
        preview.text.contains(&format!("On {a} (not installed)")),
        "{}",
        preview.text
    );
    assert!(
        preview.text.contains("+ Run scripts/log.sh and summarize."),
        "{}",
        preview.text
    );

    let installed = fleet
        .ok(
            "skill_install",
            json!({ "name": "digest", "instances": [a, b] }),
        )
        .await;
    assert!(
        installed.text.starts_with("2 of 2 installed"),
        "{}",
        installed.text
    );
    for instance in [&a, &b] {
        let script = fleet
            .ok(
                "file_read",
                json!({ "instance": instance, "path": "skills/digest/scripts/log.sh" }),
            )
            .await;
        assert_eq!(script.data["content"], "git log --oneline -20\n");
    }

    let v2 = skill_md(
        "digest",
        "Summarize recent commits and open PRs.",
        "Run scripts/log.sh, then list PRs.",
    );
    fleet
        .ok(
            "skill_write",
            json!({ "name": "digest", "skill_md": v2, "files": files }),
        )
        .await;
    let preview = fleet.ok("skill_preview", json!({ "name": "digest" })).await;
    assert!(
        preview
            .text
            .contains(&format!("On {a} (version 1 installed)")),
        "{}",
        preview.text
    );
    assert!(
        preview.text.contains("- Run scripts/log.sh and summarize."),
        "{}",
        preview.text
    );
    assert!(
        preview
            .text
            .contains("+ Run scripts/log.sh, then list PRs."),
        "{}",
        preview.text
    );
    assert_eq!(
        preview.data["diffs"].as_array().unwrap().len(),
        2,
        "SKILL.md differs on both"
    );

    let updated = fleet.ok("skill_update", json!({ "name": "digest" })).await;
    assert!(
        updated
            .text
            .starts_with("2 of 2 updated (digest version 2)"),
        "{}",
        updated.text
    );
    for instance in [&a, &b] {
        let md = fleet
            .ok(
                "file_read",
                json!({ "instance": instance, "path": "skills/digest/SKILL.md" }),
            )
            .await;
        assert!(md.data["content"].as_str().unwrap().contains("open PRs"));
    }

    fleet
        .ok(
            "skill_uninstall",
            json!({ "name": "digest", "instances": [a] }),
        )
        .await;
    assert!(
        fleet
            .op(
                "file_read",
                json!({ "instance": a, "path": "skills/digest/SKILL.md" })
            )
            .await
            .is_err()
    );
    let list = fleet.ok("skill_list", json!({})).await;
    assert!(
        list.text.contains(&format!(
            "digest v2 — Summarize recent commits and open PRs. — {b}@v2"
        )),
        "{}",
        list.text
    );
}

#[tokio::test]
async fn the_agent_prompt_lists_installed_skills_by_name_and_description_only() {
    use crate::support::{FakeLlm, Vendor, World};
    use operator::domain::Caller;
    use operator::ops::Invocation;

    ensure_test_image().await;
    let agent = unique("scribe");
    let _cleanup = Cleanup(vec![agent.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_text("Hello.");
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(Some(&llm), &docker);

    let loaded = operator::config::load(Some(&world.config)).unwrap();
    let core = operator::app::build(&loaded.settings, Vec::new())
        .await
        .unwrap();
    let inv = Invocation::new(Caller::owner("test"));
    core.ops
        .invoke(&inv, "agent_create", json!({ "name": agent }))
        .await
        .unwrap();
    let body = "BODY-MARKER: the detailed steps live here.";
    let md = skill_md(
        "release-notes",
        "Draft release notes from merged PRs.",
        body,
    );
    core.ops
        .invoke(
            &inv,
            "skill_write",
            json!({ "name": "release-notes", "skill_md": md }),
        )
        .await
        .unwrap();
    core.ops
        .invoke(
            &inv,
            "skill_install",
            json!({ "name": "release-notes", "instances": [agent] }),
        )
        .await
        .unwrap();
    core.store.close().await;
    drop(core);

    let out = world.chat(&[&format!("/use {agent}"), "hi"]).await;
    assert!(out.stdout.contains("Hello."), "{out:?}");
    let system = llm.completions()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        system.contains("- release-notes: Draft release notes from merged PRs."),
        "{system}"
    );
    assert!(!system.contains("BODY-MARKER"), "{system}");
}

#[tokio::test]
async fn skills_are_imported_from_a_folder() {
    use crate::support::World;
    use crate::support::process::{BIN, run_with_timeout};

    let world = World::new(None, "");
    let folder = world.path().join("lint-check");
    std::fs::create_dir_all(folder.join("scripts")).unwrap();
    std::fs::write(
        folder.join("SKILL.md"),
        skill_md("lint-check", "Run the linters.", "Run scripts/lint.sh."),
    )
    .unwrap();
    std::fs::write(folder.join("scripts/lint.sh"), "cargo clippy\n").unwrap();
    let import = || {
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["skills", "import"])
            .arg(&folder)
            .arg("--config")
            .arg(&world.config);
        run_with_timeout(command, "")
    };
    let first = import().await;
    assert!(first.success(), "{first:?}");
    assert_eq!(
        first.stdout.trim(),
        "skill lint-check version 1 stored (2 file(s))"
    );
    let second = import().await;
    assert_eq!(
        second.stdout.trim(),
        "skill lint-check version 1 unchanged (2 file(s))"
    );

    // A .tar.gz of the folder imports the same way (a new version, since SKILL.md changed).
    std::fs::write(
        folder.join("SKILL.md"),
        skill_md("lint-check", "Run the linters, then fix.", "Run it."),
    )
    .unwrap();
    let archive = world.path().join("lint-check.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(world.path())
        .arg("lint-check")
        .status()
        .unwrap();
    assert!(tar.success());
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["skills", "import"])
        .arg(&archive)
        .arg("--config")
        .arg(&world.config);
    let packed = run_with_timeout(command, "").await;
    assert!(packed.success(), "{packed:?}");
    assert_eq!(
        packed.stdout.trim(),
        "skill lint-check version 2 stored (2 file(s))"
    );

    std::fs::write(folder.join("SKILL.md"), skill_md("other-name", "x", "y")).unwrap();
    let bad = import().await;
    assert!(!bad.success());
    assert!(
        bad.stderr.contains("must equal the folder name"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn skill_test_runs_a_prompt_on_a_throwaway_clone_and_removes_it() {
    use crate::support::{FakeLlm, Vendor};
    use operator::domain::Caller;
    use operator::ops::Invocation;

    ensure_test_image().await;
    let source = unique("sksrc");
    let _cleanup = Cleanup(vec![source.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[(
        "t1",
        "run_command",
        r#"{"command":"cat skills/greet/SKILL.md"}"#,
    )]);
    llm.reply_text("Skill works: it greets people.");
    let world = crate::support::inproc::core(Some(&llm), |s| {
        crate::support::inproc::use_engine(s, TEST_IMAGE);
        s.docker.memory_mb = 256;
    })
    .await;
    let core = &world.core;
    let inv = Invocation::new(Caller::owner("test"));
    core.ops
        .invoke(&inv, "instance_create", json!({ "name": source }))
        .await
        .unwrap();
    let md = skill_md(
        "greet",
        "Greet people warmly.",
        "GREETING-STEPS: say hello.",
    );
    core.ops
        .invoke(
            &inv,
            "skill_write",
            json!({ "name": "greet", "skill_md": md }),
        )
        .await
        .unwrap();

    let out = core
        .ops
        .invoke(
            &inv,
            "skill_test",
            json!({ "name": "greet", "instance": source, "prompt": "greet me" }),
        )
        .await
        .unwrap();
    assert!(
        out.text
            .contains("the test agent answered: Skill works: it greets people."),
        "{}",
        out.text
    );
    let tool_result = llm.completions()[1].body.to_string();
    assert!(
        tool_result.contains("GREETING-STEPS"),
        "the clone had the skill installed: {tool_result}"
    );
    let instances = core.store.list_instances().await.unwrap();
    assert_eq!(instances.len(), 1, "the clone is gone: {instances:?}");
    assert!(
        core.store.list_agents().await.unwrap().is_empty(),
        "so is the test agent"
    );
    let clone = llm.completions()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let name = clone
        .split("instance ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let gone = crate::support::docker::docker()
        .await
        .inspect_container(
            &format!("operator-{name}"),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await;
    assert!(gone.is_err(), "container of {name} removed");
}
