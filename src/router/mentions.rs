//! `@file` mentions: `@name.ext` is looked up among the files of every active instance,
//! `@instance:path` is exact. One match per mention: the message goes to the agent it names
//! with `@agent`, else to the agent owning the file's instance, and the model is told what was
//! matched (an image is shown to it). Several matches, or none, are answered by the daemon
//! itself, without a model call.

use serde_json::json;

use super::Router;
use crate::channel::Inbound;
use crate::domain::{ImagePart, MAX_FILE_BYTES, OPERATOR};
use crate::instance::files;
use crate::ops::mentions::Found;
use crate::store::NewActivity;

/// A mention in a message's text.
#[derive(Debug, Clone, PartialEq)]
pub enum Mention {
    /// `@report.pdf`: a file by name.
    File(String),
    /// `@instance:path/to/file`.
    Exact { instance: String, path: String },
    /// `@daniel`: an agent (or anything else without a dot).
    Agent(String),
}

/// The mentions in `text`, in order. An `@` counts at the start or after a space or an opening
/// bracket (so `a@b.com` is not one); trailing punctuation is not part of it.
pub fn parse(text: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts = c == '@' && prev.is_none_or(|p| p.is_whitespace() || "([{\"'".contains(p));
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[i + 1..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "-_./:~+".contains(c)))
            .unwrap_or(rest.len());
        let token = rest[..end].trim_end_matches(['.', ':', ',']);
        if token.is_empty() {
            continue;
        }
        if let Some((instance, path)) = token.split_once(':') {
            if !instance.is_empty() && !path.is_empty() {
                out.push(Mention::Exact {
                    instance: instance.to_ascii_lowercase(),
                    path: path.to_string(),
                });
            }
        } else if let Some((stem, ext)) = token.rsplit_once('.')
            && !stem.is_empty()
            && (1..=8).contains(&ext.len())
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
        {
            out.push(Mention::File(token.to_string()));
        } else if !token.contains(['.', '/']) {
            out.push(Mention::Agent(token.to_ascii_lowercase()));
        }
    }
    out
}

/// What the mentions in a message came to.
pub(super) enum Resolved {
    /// No file mentions: route as usual.
    Nothing,
    /// The daemon answers by itself (a mention matched several files, or none).
    Answer(String),
    /// Each file mention matched one file.
    Files {
        /// The agent the message goes to.
        agent: String,
        /// The lines the model reads after the message, one per file.
        notes: Vec<String>,
        images: Vec<ImagePart>,
    },
}

fn kind_of(path: &str) -> &'static str {
    let ext = path
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "md" | "log" => "text",
        "csv" => "text/csv",
        "json" => "application/json",
        "mp4" | "mov" | "mkv" | "webm" => "video",
        "mp3" | "ogg" | "wav" | "m4a" | "opus" => "audio",
        _ => "file",
    }
}

impl Router {
    /// Resolves the file mentions of a turn's first message. A file's owner (or an `@agent`
    /// the message names) takes the message instead of the agent the chat talks to, whose
    /// conversation is then told; unless the message is `fixed` to an agent (the admin page and
    /// `/api/chat` talk to Operator), which is then told what matched. An error is for the user.
    pub(super) async fn resolve_mentions(
        &self,
        message: &Inbound,
        fixed: Option<&str>,
    ) -> Result<Resolved, String> {
        let mentions = parse(&message.text);
        if !mentions
            .iter()
            .any(|m| matches!(m, Mention::File(_) | Mention::Exact { .. }))
        {
            return Ok(Resolved::Nothing);
        }
        let bound = match fixed {
            Some(agent) => agent.to_string(),
            None => self.bound_agent(&message.chat).await?,
        };
        let bound = bound.as_str();
        let ops = &self.inner.ops;
        let mut named_agent = None;
        let mut matched: Vec<(String, Found)> = Vec::new();
        let mut unsearched = Vec::new();
        for mention in mentions {
            let (token, result) = match &mention {
                Mention::Agent(name) => {
                    if named_agent.is_none()
                        && (name == OPERATOR || self.inner.store.agent(name).await.is_ok())
                    {
                        named_agent = Some(name.clone());
                    }
                    continue;
                }
                Mention::File(name) => (
                    format!("@{name}"),
                    ops.find_files(name)
                        .await
                        .map(|(found, failed)| {
                            unsearched.extend(failed);
                            found
                        })
                        .map_err(|e| e.to_string()),
                ),
                Mention::Exact { instance, path } => (
                    format!("@{instance}:{path}"),
                    ops.find_exact(instance, path)
                        .await
                        .map(|f| f.into_iter().collect())
                        .map_err(|e| e.to_string()),
                ),
            };
            let found = match result {
                Ok(found) => found,
                Err(e) => {
                    return Ok(Resolved::Answer(format!(
                        "I could not look up {token}: {e}"
                    )));
                }
            };
            match found.len() {
                0 => {
                    let mut answer = format!(
                        "I found no file {} in any running instance.",
                        token.trim_start_matches('@')
                    );
                    if !unsearched.is_empty() {
                        answer.push_str(&format!(
                            " These could not be searched: {}",
                            unsearched.join("; ")
                        ));
                    }
                    return Ok(Resolved::Answer(answer));
                }
                1 => matched.extend(found.into_iter().map(|f| (token.clone(), f))),
                n => {
                    let list: Vec<String> = found
                        .iter()
                        .take(10)
                        .map(|f| format!("- @{} ({} bytes)", f.exact(), f.size))
                        .collect();
                    let more = if n > 10 {
                        format!("\n(and {} more)", n - 10)
                    } else {
                        String::new()
                    };
                    return Ok(Resolved::Answer(format!(
                        "{token} matches {n} files. Which one? Send the message again with one of:\n{}{more}",
                        list.join("\n")
                    )));
                }
            }
        }
        let agent = match fixed {
            Some(agent) => agent.to_string(),
            None => named_agent
                .or_else(|| matched.iter().find_map(|(_, f)| f.agent.clone()))
                .unwrap_or_else(|| bound.to_string()),
        };
        let mut notes = Vec::new();
        let mut images = Vec::new();
        for (token, f) in &matched {
            let owner = f
                .agent
                .as_deref()
                .map(|a| format!(", agent {a}"))
                .unwrap_or_default();
            notes.push(format!(
                "[{token} is {} on instance {}{owner}: {} bytes, {}, modified {}]",
                f.path,
                f.instance,
                f.size,
                kind_of(&f.path),
                crate::domain::format_millis(f.modified * 1000)
            ));
            if crate::media::is_image_name(&f.path) {
                match self.mentioned_image(f).await {
                    Ok(image) => images.push(image),
                    Err(e) => notes.push(format!("[{token} could not be shown to you: {e}]")),
                }
            }
        }
        if agent != bound {
            self.tell_bound(message, bound, &agent, &matched).await;
        }
        Ok(Resolved::Files {
            agent,
            notes,
            images,
        })
    }

    async fn mentioned_image(&self, f: &Found) -> Result<ImagePart, String> {
        let backend = self.inner.ops.instances().clone();
        let (path, bytes) =
            files::read_bytes(backend.as_ref(), &f.instance, &f.path, MAX_FILE_BYTES)
                .await
                .map_err(|e| e.to_string())?;
        crate::media::prepare_async(bytes, path).await
    }

    /// The chat's own agent hears where a message that mentioned files went.
    async fn tell_bound(
        &self,
        message: &Inbound,
        bound: &str,
        agent: &str,
        matched: &[(String, Found)],
    ) {
        let files: Vec<String> = matched
            .iter()
            .map(|(token, f)| format!("{token} = {}", f.exact()))
            .collect();
        let said: String = message.text.chars().take(300).collect();
        let note = format!(
            "[a message in this chat mentioned {} and went to agent {agent}: {said}]",
            files.join(", ")
        );
        let store = &self.inner.store;
        match store.open_conversation(&message.chat, bound).await {
            Ok(c) => {
                if let Err(e) = store.append_user_message(c.id, &note, None, &[]).await {
                    tracing::warn!("cannot note a routed mention: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot note a routed mention: {e}"),
        }
        self.record(NewActivity {
            kind: "mention.routed".into(),
            actor: message.sender_name.clone(),
            agent: Some(agent.to_string()),
            summary: format!("{} -> {agent}", files.join(", ")),
            detail: Some(json!({ "chat": message.chat.to_string(), "bound": bound })),
            ..NewActivity::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_exact_paths_and_agents() {
        let m = parse("@mulholland.jpg pull the palette for scene 4 on @daniel.");
        assert_eq!(
            m,
            vec![
                Mention::File("mulholland.jpg".into()),
                Mention::Agent("daniel".into())
            ]
        );
        let m = parse("compare (@film:boards/scene-4.png) and @Report.PDF, please");
        assert_eq!(
            m,
            vec![
                Mention::Exact {
                    instance: "film".into(),
                    path: "boards/scene-4.png".into()
                },
                Mention::File("Report.PDF".into())
            ]
        );
    }

    #[test]
    fn mail_addresses_and_bare_at_signs_are_not_mentions() {
        assert!(parse("write to ann@example.com @ noon").is_empty());
    }
}
