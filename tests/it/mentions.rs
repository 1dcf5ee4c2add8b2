//! `@file` mentions against the real Docker engine: a file found in one instance routes the
//! message to its agent (and Operator hears of it), two matches get a question and no model
//! call, an image mention shows the image to the model, and `GET /api/mentions` offers agents
//! and files for the chat box.

use base64::Engine;
use serde_json::{Value, json};

use crate::images::png;
use crate::support::docker::{Cleanup, TEST_IMAGE, ensure_test_image, unique};
use crate::support::inproc::{core, serve};
use crate::support::llm::images_in;
use crate::support::{FakeLlm, Vendor, World};

const TOKEN: &str = "mention-test-token";

fn upload(agent: &str, name: &str, bytes: &[u8]) -> Value {
    json!({
        "agent": agent,
        "name": name,
        "content_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

#[tokio::test]
async fn file_mentions_route_to_the_owner_ask_when_ambiguous_and_show_images() {
    ensure_test_image().await;
    let film = unique("film");
    let desk = unique("desk");
    let _cleanup = Cleanup(vec![film.clone(), desk.clone()]);
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    llm.reply_tool_calls(&[
        (
            "c1",
            "agent_create",
            &json!({ "name": film, "persona": "Makes films." }).to_string(),
        ),
        (
            "c2",
            "agent_create",
            &json!({ "name": desk, "persona": "Keeps the desk." }).to_string(),
        ),
    ]);
    llm.reply_text("Both are set up.");
    llm.reply_when(&format!("Your name: {film}."), "film here: on it");
    llm.reply_text("Film took the report and the board.");
    let docker = format!(
        "[docker]\nhost = \"\"\nimage = \"{TEST_IMAGE}\"\npackages = []\nnetwork = \"none\"\nmemory_mb = 256\n"
    );
    let world = World::new(Some(&llm), &docker);
    let out = world.chat(&["set up film and desk"]).await;
    assert!(
        out.success() && out.stdout.contains("Both are set up."),
        "{out:?}"
    );
    // The files arrive as uploads would, through the control surface of a core on the same
    // state (models cannot send bytes).
    let in_process = core(None, |s| {
        s.state.dir = Some(world.path().join("state"));
        crate::support::inproc::use_engine(s, TEST_IMAGE);
    })
    .await;
    let owner = operator::ops::Invocation::new(operator::domain::Caller::owner("test"));
    for (agent, name, bytes) in [
        (&film, "report.pdf", b"%PDF-1.4 a fake report".to_vec()),
        (&film, "notes.txt", b"film notes".to_vec()),
        (&desk, "notes.txt", b"desk notes".to_vec()),
        (&film, "board.png", png(2000, 1000)),
    ] {
        in_process
            .core
            .ops
            .invoke(&owner, "file_upload", upload(agent, name, &bytes))
            .await
            .unwrap();
    }
    let before = llm.completions().len();
    let out = world
        .chat(&[
            "@report.pdf summarize this",
            "@notes.txt what is in it?",
            "@missing.txt hello",
        ])
        .await;
    assert!(out.success(), "{out:?}");
    // One model request: the report's; the question and the miss were the daemon's own.
    let requests = llm.completions();
    assert_eq!(requests.len(), before + 1, "{}", out.stdout);
    let asked = requests.last().unwrap().body.to_string();
    assert!(asked.contains(&format!("Your name: {film}.")), "{asked}");
    assert!(
        asked.contains(&format!(
            "[@report.pdf is /workspace/uploads/report.pdf on instance {film}, agent {film}: 22 bytes, application/pdf"
        )),
        "{asked}"
    );
    assert!(out.stdout.contains("film here: on it"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("@notes.txt matches 2 files. Which one?")
            && out.stdout.contains(&format!("@{film}:uploads/notes.txt"))
            && out.stdout.contains(&format!("@{desk}:uploads/notes.txt")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("I found no file missing.txt in any running instance."),
        "{}",
        out.stdout
    );

    // An exact image mention: the image reaches the model, scaled; then Operator, asked next,
    // has heard where the mentions went.
    let out = world
        .chat(&[
            &format!("@{film}:uploads/board.png which colours?"),
            "what happened with the files?",
        ])
        .await;
    assert!(out.success(), "{out:?}");
    let requests = llm.completions();
    let image_request = requests
        .iter()
        .rev()
        .find(|r| !images_in(&r.body).is_empty())
        .expect("a request with the image");
    let images = images_in(&image_request.body);
    assert_eq!(images[0].0, "image/jpeg");
    let last = requests.last().unwrap().body.to_string();
    assert!(
        last.contains(&format!(
            "mentioned @report.pdf = {film}:uploads/report.pdf and went to agent {film}"
        )),
        "{last}"
    );
    assert!(
        out.stdout.contains("Film took the report and the board."),
        "{}",
        out.stdout
    );

    // The chat box's popover, over the API.
    let served = serve(
        &in_process.core,
        Some(operator::http::api::token_hash(TOKEN)),
    )
    .await;
    let http = reqwest::Client::new();
    let found: Value = http
        .get(served.url("/api/mentions?q=note"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut mentions: Vec<&str> = found["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["mention"].as_str().unwrap())
        .collect();
    mentions.sort();
    let mut expected = vec![
        format!("{film}:uploads/notes.txt"),
        format!("{desk}:uploads/notes.txt"),
    ];
    expected.sort();
    assert_eq!(mentions, expected, "{found}");
    let found: Value = http
        .get(served.url(&format!("/api/mentions?q=@{}", &film[..6])))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["agents"], json!([film]), "{found}");
    let closed = http
        .get(served.url("/api/mentions?q=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 401);
}
