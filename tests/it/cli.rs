//! The command line: config errors, `check`, `migrate`, `--version`.

use tokio::process::Command;

use crate::support::process::BIN;
use crate::support::{FakeLlm, Vendor, World, run_with_timeout};

#[tokio::test]
async fn unknown_config_key_names_the_key_and_the_file() {
    let world = World::new(None, "[llm]\nmodle = \"gpt\"\n");
    for command in ["check", "run", "chat"] {
        let out = world.run(&[command], "").await;
        assert!(!out.success(), "{command}: {out:?}");
        assert!(out.stderr.contains("modle"), "{command}: {}", out.stderr);
        assert!(
            out.stderr.contains("operator.toml"),
            "{command}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn bad_toml_is_a_clear_error() {
    let world = World::new(None, "[llm\nmodel = 1\n");
    let out = world.run(&["check"], "").await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("operator.toml") && out.stderr.contains("TOML parse error"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("line"), "{}", out.stderr);
}

#[tokio::test]
async fn wrong_type_and_bad_env_are_clear_errors() {
    let world = World::new(None, "[operator]\nmax_steps = \"many\"\n");
    let out = world.run(&["check"], "").await;
    assert!(!out.success());
    assert!(out.stderr.contains("operator.max_steps"), "{}", out.stderr);

    let world = World::new(None, "");
    // run_with_timeout clears OPERATOR* variables, so set it inside a wrapper shell.
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(format!(
        "OPERATOR__LLM__NOPE=1 exec {BIN} check --config {}",
        world.config.display()
    ));
    let out = run_with_timeout(shell, "").await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("OPERATOR__") && out.stderr.contains("nope"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn an_unusable_state_dir_is_a_clear_error() {
    let world = World::new(None, "");
    let blocker = world.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let config = format!(
        "[state]\ndir = {:?}\n",
        blocker.join("state").display().to_string()
    );
    std::fs::write(&world.config, config).unwrap();
    for command in ["chat", "migrate", "check"] {
        let out = world.run(&[command], "").await;
        assert!(!out.success(), "{command}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("state directory") && text.contains("not-a-dir"),
            "{command}: {text}"
        );
    }
}

#[tokio::test]
async fn check_on_the_default_config_passes_and_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped default file, used as is, from a fresh working directory.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/operator.toml");
    let mut command = Command::new(BIN);
    command
        .args(["check", "--config", shipped])
        .current_dir(dir.path());
    let out = run_with_timeout(command, "").await;
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.contains("llm") && out.stdout.contains("not configured"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("telegram  disabled"), "{}", out.stdout);
    assert!(out.stdout.contains("0 error(s)"), "{}", out.stdout);

    // With no file at all, built-in defaults are used.
    let mut command = Command::new(BIN);
    command.arg("check").current_dir(dir.path());
    let out = run_with_timeout(command, "").await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("built-in defaults"), "{}", out.stdout);
}

#[tokio::test]
async fn check_probes_the_llm() {
    let llm = FakeLlm::start(Vendor::OpenAi).await;
    // The local engine (scripts/test.sh starts one) is checked too.
    let world = World::new(Some(&llm), "[docker]\nhost = \"\"\n");
    let out = world.run(&["check"], "").await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("key accepted"), "{}", out.stdout);
    assert!(
        out.stdout.contains("ok    docker    local socket: Docker"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("test-key"), "the key is never printed");

    let dead = World::new(
        None,
        "[llm]\napi_key = \"k\"\nbase_url = \"http://127.0.0.1:9/v1\"\ntimeout_secs = 2\n",
    );
    let out = dead.run(&["check"], "").await;
    assert!(!out.success(), "{out:?}");
    assert!(out.stdout.contains("ERROR llm"), "{}", out.stdout);
}

#[tokio::test]
async fn docker_hosts_are_validated_and_checked_one_by_one() {
    let world = World::new(
        None,
        "[[docker.hosts]]\nname = \"b\"\nendpoint = \"tcp://10.0.0.7:2376\"\n",
    );
    let out = world.run(&["check"], "").await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("operator.toml")
            && out.stderr.contains("docker.hosts[0].endpoint")
            && out.stderr.contains("tls_ca"),
        "{}",
        out.stderr
    );
    let world = World::new(
        None,
        "[[docker.hosts]]\nname = \"a\"\nendpoint = \"unix:///var/run/docker.sock\"\n\
         capacity_instances = 5\n\
         [[docker.hosts]]\nname = \"b\"\nendpoint = \"unix:///nowhere/docker.sock\"\n",
    );
    let out = world.run(&["check"], "").await;
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("ok    docker    host a (unix:///var/run/docker.sock): Docker")
            && out.stdout.contains("0 instance(s) of 5"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("ERROR docker    host b (unix:///nowhere/docker.sock)"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn migrate_applies_once_and_version_prints() {
    let world = World::new(None, "");
    let first = world.run(&["migrate"], "").await;
    assert!(first.success(), "{first:?}");
    assert!(
        first.stdout.contains("applied 19 migration"),
        "{}",
        first.stdout
    );
    let again = world.run(&["migrate"], "").await;
    assert!(
        again.stdout.contains("applied 0 migration"),
        "{}",
        again.stdout
    );

    let mut command = Command::new(BIN);
    command.arg("--version");
    let out = run_with_timeout(command, "").await;
    assert_eq!(
        out.stdout.trim(),
        format!("operator {}", env!("CARGO_PKG_VERSION"))
    );
}
