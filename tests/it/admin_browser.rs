//! The admin page in a real headless Chromium: log in, see a running instance with its log tail,
//! browse and write its files, watch the activity feed receive entries without reloading, and
//! start the instance with its button. Screenshots are kept under `target/test-artifacts/`.

use serde_json::json;

use crate::admin::TOKEN;
use crate::fleet::Fleet;
use crate::support::browser::Browser;
use crate::support::docker::{Cleanup, unique};
use crate::support::inproc::serve;

#[tokio::test]
async fn in_a_real_browser_an_owner_logs_in_and_runs_the_fleet() {
    let fleet = Fleet::new().await;
    let name = unique("page");
    let _cleanup = Cleanup(vec![name.clone()]);
    fleet.ok("instance_create", json!({ "name": name })).await;
    let served = serve(&fleet.core, Some(operator::http::api::token_hash(TOKEN))).await;
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");

    let mut browser = Browser::start().await;
    browser.open(&served.url("/instances")).await;
    // Not logged in: the login page.
    browser.wait_for("location.pathname === '/login'").await;
    browser
        .eval(&format!(
            "document.getElementById('token').value = '{TOKEN}'; document.getElementById('login').click(); true"
        ))
        .await;
    browser.wait_for("location.pathname === '/'").await;
    // The overview is rendered once its page has loaded (slow on a busy machine).
    browser
        .wait_for("document.body && document.body.innerText.includes('Queued messages')")
        .await;
    let overview = browser.text().await;
    assert!(overview.contains("Queued messages"), "{overview}");

    browser.open(&served.url("/instances")).await;
    let page = browser.text().await;
    assert!(page.contains(&name), "{page}");
    assert!(page.contains("active"), "{page}");
    // Its resources: the Fleet helper's 256 MB and 64 processes.
    assert!(page.contains("256 MB") && page.contains("64"), "{page}");
    assert!(page.contains("Log tails"), "{page}");
    browser
        .screenshot(&artifacts.join("admin-instances.png"))
        .await;
    assert!(
        artifacts
            .join("admin-instances.png")
            .metadata()
            .unwrap()
            .len()
            > 1000
    );

    // Its files: write one with the page's form, then walk to it and read it.
    browser
        .eval("document.querySelector('tr.instance a.files').click(); true")
        .await;
    browser
        .wait_for("location.pathname.endsWith('/files') && document.readyState === 'complete'")
        .await;
    browser
        .eval(
            "document.getElementById('file_write-path').value = 'notes/hello.txt';\
             document.getElementById('file_write-content').value = 'hi from the page';\
             document.getElementById('file_write-submit').click(); true",
        )
        .await;
    browser
        .wait_for("location.pathname === '/do/file_write' && document.readyState === 'complete'")
        .await;
    let done = browser.text().await;
    assert!(done.contains("Wrote 16 bytes"), "{done}");
    browser
        .eval("document.getElementById('back').click(); true")
        .await;
    browser
        .wait_for("location.pathname.endsWith('/files') && !!document.getElementById('files')")
        .await;
    let click = |text: &str| {
        format!(
            "[...document.querySelectorAll('#files a')].find(a => a.textContent === '{text}').click(); true"
        )
    };
    browser.eval(&click("notes/")).await;
    browser
        .wait_for(
            "!!document.getElementById('dir') && document.getElementById('dir').textContent === '/workspace/notes'",
        )
        .await;
    browser.eval(&click("hello.txt")).await;
    browser
        .wait_for("!!document.getElementById('content')")
        .await;
    let content = browser
        .eval("document.getElementById('content').textContent")
        .await;
    assert_eq!(content, json!("hi from the page"));
    browser.screenshot(&artifacts.join("admin-file.png")).await;

    // The chat box's mention popover: typing @hel offers the file by its exact mention, and a
    // click puts that mention in the message.
    browser.open(&served.url("/chat")).await;
    browser
        .eval(
            "const m = document.getElementById('message'); m.focus(); m.value = 'look at @hel';\
             m.setSelectionRange(m.value.length, m.value.length);\
             m.dispatchEvent(new Event('input')); true",
        )
        .await;
    let mention = format!("@{name}:notes/hello.txt");
    browser
        .wait_for(&format!(
            "[...document.querySelectorAll('#mention-list li')].some(li => li.textContent.startsWith('{mention}'))"
        ))
        .await;
    browser
        .eval(&format!(
            "[...document.querySelectorAll('#mention-list li')].find(li => li.textContent.startsWith('{mention}'))\
             .dispatchEvent(new MouseEvent('mousedown', {{ bubbles: true }})); true"
        ))
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('message').value")
            .await,
        json!(format!("look at {mention} "))
    );

    // The feed of this instance, live: the creation is there, and a stop made elsewhere
    // appears without the page reloading.
    browser
        .open(&served.url(&format!("/activity?instance={name}")))
        .await;
    let feed = browser.text().await;
    assert!(feed.contains("op.instance_create"), "{feed}");
    browser
        .wait_for("document.getElementById('live-state').textContent === 'live'")
        .await;
    browser.eval("window.notReloaded = true").await;
    fleet
        .ok("instance_stop", json!({ "targets": [name] }))
        .await;
    browser
        .wait_for(
            "[...document.querySelectorAll('tr.entry')].some(r => r.textContent.includes('op.instance_stop'))",
        )
        .await;
    assert_eq!(
        browser.eval("window.notReloaded === true").await,
        json!(true)
    );
    browser
        .screenshot(&artifacts.join("admin-activity.png"))
        .await;

    // Start it again with its button (the confirmation answered yes).
    browser.open(&served.url("/instances")).await;
    browser
        .eval(
            "window.confirm = () => true;\
             document.querySelector('form[action=\"/do/instance_start\"] button').click(); true",
        )
        .await;
    browser
        .wait_for(
            "location.pathname === '/do/instance_start' && document.readyState === 'complete'",
        )
        .await;
    let started = browser.text().await;
    assert!(started.contains("Done"), "{started}");
    let record = fleet.core.store.instance(&name).await.unwrap();
    assert_eq!(record.status.as_str(), "active");
}
