//! The command lines of the CLI runtimes' turns (run through `sh -c` in the instance).

use crate::instance::files::shell_quote;

/// The command line of one Claude Code turn.
pub fn claude_command(
    message: &str,
    persona: &str,
    model: Option<&str>,
    session: Option<&str>,
) -> String {
    let mut cmd = format!(
        "claude -p {} --output-format stream-json --verbose --dangerously-skip-permissions",
        shell_quote(message)
    );
    if !persona.trim().is_empty() {
        cmd.push_str(&format!(
            " --append-system-prompt {}",
            shell_quote(persona.trim())
        ));
    }
    if let Some(model) = model.filter(|m| !m.trim().is_empty()) {
        cmd.push_str(&format!(" --model {}", shell_quote(model.trim())));
    }
    if let Some(session) = session {
        cmd.push_str(&format!(" --resume {}", shell_quote(session)));
    }
    cmd
}

/// The command line of one Codex turn (`codex exec --json`, resumed by thread id). Codex has
/// no flag for a persona, so a new session's first prompt starts with it.
pub fn codex_command(
    message: &str,
    persona: &str,
    model: Option<&str>,
    session: Option<&str>,
) -> String {
    let mut cmd = String::from(
        "codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox",
    );
    if let Some(model) = model.filter(|m| !m.trim().is_empty()) {
        cmd.push_str(&format!(" -m {}", shell_quote(model.trim())));
    }
    match session {
        Some(session) => cmd.push_str(&format!(
            " resume {} {}",
            shell_quote(session),
            shell_quote(message)
        )),
        None if !persona.trim().is_empty() => cmd.push_str(&format!(
            " {}",
            shell_quote(&format!("{}\n\n{message}", persona.trim()))
        )),
        None => cmd.push_str(&format!(" {}", shell_quote(message))),
    }
    cmd
}
