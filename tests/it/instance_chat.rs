//! Instances seen from a conversation: an agent on its own instance, and image pull progress.

use serde_json::json;

use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};

/// Operator creates an agent; the agent gets its own instance with IDENTITY.md, and in its
/// conversation it works there through its workspace tools.
#[tokio::test]
async fn an_agent_lives_and_works_on_its_own_instance() {
    use crate::support::{FakeLlm, Vendor, World};

    ensure_test_image().await;
    let name = unique("scout");
    let _cleanup = Cleanup(vec![name.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[(
        "c1",
        "agent_create",
        &json!({ "name": name, "persona": "Scouts repositories.", "role": "repo scout", "tone": "terse" }).to_string(),
    )]);
    llm.reply_text("Scout is ready.");
    llm.reply_tool_calls(&[(
        "c2",
        "run_command",
        r#"{"command":"cat IDENTITY.md; ls -a"}"#,
    )]);
    llm.reply_text("I am set up.");
    llm.reply_text("Fleet looks fine.");
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(Some(&llm), &docker);
    let out = world
        .chat(&[
            "make a scout agent",
            &format!("/use {name}"),
            "check your setup",
            "/use operator",
            "how is the fleet?",
        ])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("I am set up."), "{}", out.stdout);

    let requests = llm.completions();
    let created = requests[1].body.to_string();
    assert!(
        created.contains(&format!("Created agent {name} on instance {name}.")),
        "{created}"
    );

    let agent_request = &requests[2].body;
    let tools: Vec<&str> = agent_request["tools"]
        .as_array()
        .expect("the agent has workspace tools")
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "run_command",
            "read_file",
            "write_file",
            "list_files",
            "send_file"
        ]
    );
    let system = agent_request["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("Role: repo scout\nTone: terse"),
        "{system}"
    );
    assert!(system.contains(&format!("instance {name}")), "{system}");

    // The command ran inside the agent's own instance and saw its seeded workspace.
    let result = requests[3].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(result.contains(&format!("# {name}")), "{result}");
    assert!(
        result.contains("Scouts repositories.") && result.contains("USER.md"),
        "{result}"
    );

    // Operator sees the fleet in its prompt.
    let operator = requests[4].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        operator.contains(&format!("- {name}: active, -, {name}")),
        "{operator}"
    );
}

/// An image pull shows its progress in the chat, and a failed pull names the image.
#[tokio::test]
async fn image_pulls_report_progress_to_the_chat() {
    use crate::support::{FakeLlm, Vendor, World};

    let name = unique("pull");
    let _cleanup = Cleanup(vec![name.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    let args = json!({ "name": name, "image": "registry.invalid/nothing:1" }).to_string();
    llm.reply_tool_calls(&[("c1", "instance_create", &args)]);
    llm.reply_text("The image could not be pulled.");
    let world = World::new(Some(&llm), "[docker]\nhost = \"\"\nnetwork = \"none\"\n");
    let out = world
        .chat(&["make an instance from registry.invalid/nothing:1"])
        .await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("… pulling image registry.invalid/nothing:1"),
        "{}",
        out.stdout
    );
    let result = llm.completions()[1].body.to_string();
    assert!(
        result.contains("image registry.invalid/nothing:1 is not available"),
        "{result}"
    );
}
