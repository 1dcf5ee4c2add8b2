//! What the settings tree must satisfy beyond its types: each rule names the key it is about.

use super::{ConfigError, DockerSettings, Settings, Streaming, TelegramMode};

impl Settings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if self.llm.model.trim().is_empty() {
            return invalid("llm.model", "must not be empty");
        }
        if self.llm.timeout_secs == 0 {
            return invalid("llm.timeout_secs", "must be at least 1");
        }
        if self.llm.max_tokens == 0 {
            return invalid("llm.max_tokens", "must be at least 1");
        }
        for (i, server) in self.mcp.servers.iter().enumerate() {
            let shape = crate::domain::mcp_server_problem(
                &server.name,
                server.url.as_deref(),
                server.command.as_deref(),
                &server.headers,
            );
            if let Some((field, message)) = shape {
                return Err(ConfigError::Invalid {
                    key: format!("mcp.servers[{i}].{field}"),
                    message,
                });
            }
            if self.mcp.servers[..i].iter().any(|s| s.name == server.name) {
                return invalid(&format!("mcp.servers[{i}].name"), "is used twice");
            }
        }
        if self.operator.max_steps == 0 {
            return invalid("operator.max_steps", "must be at least 1");
        }
        if self.operator.context_tokens < 1000 {
            return invalid("operator.context_tokens", "must be at least 1000");
        }
        let mut names = std::collections::HashSet::from(["default".to_string()]);
        for (i, p) in self.llm.providers.iter().enumerate() {
            let key = |field: &str| format!("llm.providers[{i}].{field}");
            if p.name.is_empty() || p.name.contains('/') || !names.insert(p.name.clone()) {
                return Err(ConfigError::Invalid {
                    key: key("name"),
                    message: format!(
                        "{:?} must be a unique name without '/', other than \"default\"",
                        p.name
                    ),
                });
            }
            if reqwest::Url::parse(&p.base_url).is_err() {
                return Err(ConfigError::Invalid {
                    key: key("base_url"),
                    message: "must be a URL".into(),
                });
            }
            if p.api_key.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("api_key"),
                    message: "must not be empty".into(),
                });
            }
        }
        for (i, f) in self.llm.fallbacks.iter().enumerate() {
            if let Some((provider, _)) = f.split_once('/')
                && !names.contains(provider)
            {
                return Err(ConfigError::Invalid {
                    key: format!("llm.fallbacks[{i}]"),
                    message: format!("names provider {provider:?}, which is not configured"),
                });
            }
        }
        if self.discord.streaming == Streaming::Draft {
            return invalid(
                "discord.streaming",
                "\"draft\" is Telegram's; Discord takes \"edit\" or \"off\"",
            );
        }
        if self.approvals.timeout_secs == 0 {
            return invalid("approvals.timeout_secs", "must be at least 1");
        }
        if let Err(e) = crate::scheduler::Schedule::parse(&self.backup.every, "UTC") {
            return invalid("backup.every", &e.to_string());
        }
        if self.backup.keep == 0 {
            return invalid("backup.keep", "must be at least 1");
        }
        if self.admin.listen.parse::<std::net::SocketAddr>().is_err() {
            return invalid("admin.listen", "must be an address such as 127.0.0.1:8080");
        }
        if reqwest::Url::parse(&self.llm.base_url).is_err() {
            return invalid(
                "llm.base_url",
                "must be a URL such as https://api.openai.com/v1",
            );
        }
        if reqwest::Url::parse(&self.telegram.api_url).is_err() {
            return invalid(
                "telegram.api_url",
                "must be a URL such as https://api.telegram.org",
            );
        }
        if reqwest::Url::parse(&self.discord.api_url).is_err() {
            return invalid(
                "discord.api_url",
                "must be a URL such as https://discord.com",
            );
        }
        let d = &self.discord;
        if !(d.messages_per_second > 0.0 && d.chat_messages_per_second > 0.0) {
            return invalid(
                "discord.messages_per_second",
                "the message rates must be above 0",
            );
        }
        let t = &self.telegram;
        if !(t.messages_per_second > 0.0 && t.chat_messages_per_second > 0.0) {
            return invalid(
                "telegram.messages_per_second",
                "the message rates must be above 0",
            );
        }
        if t.enabled
            && t.mode == TelegramMode::Webhook
            && reqwest::Url::parse(&t.webhook_url).is_err()
        {
            return invalid(
                "telegram.webhook_url",
                "mode = \"webhook\" needs the public HTTPS base URL Telegram calls",
            );
        }
        self.docker.validate_hosts()
    }
}

impl DockerSettings {
    fn validate_hosts(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if !self.hosts.is_empty() && !self.host.trim().is_empty() {
            return invalid(
                "docker.host".into(),
                "set either docker.host (one engine) or [[docker.hosts]] (several), not both"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let key = |field: &str| format!("docker.hosts[{i}].{field}");
            let valid_name = !h.name.is_empty()
                && h.name.len() <= 40
                && h.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return invalid(
                    key("name"),
                    format!("{:?} must be lowercase letters, digits and hyphens", h.name),
                );
            }
            if !seen.insert(h.name.clone()) {
                return invalid(key("name"), format!("{:?} is used twice", h.name));
            }
            let endpoint = h.endpoint.trim();
            let tls = [&h.tls_ca, &h.tls_cert, &h.tls_key];
            if endpoint.starts_with("tcp://") {
                if tls.iter().any(|f| f.is_none()) {
                    return invalid(
                        key("endpoint"),
                        "a tcp:// engine needs tls_ca, tls_cert and tls_key: the Docker API \
                         without TLS gives root on that host to anyone who can reach it"
                            .into(),
                    );
                }
            } else if endpoint.starts_with("ssh://") {
                if endpoint.len() <= "ssh://".len() {
                    return invalid(key("endpoint"), "ssh:// needs user@host".into());
                }
            } else if !endpoint.starts_with("unix://") {
                return invalid(
                    key("endpoint"),
                    format!("{endpoint:?} must start with unix://, tcp:// or ssh://"),
                );
            }
            if h.capacity_instances == Some(0) || h.capacity_memory_mb == Some(0) {
                return invalid(
                    key("capacity_instances"),
                    "a capacity must be above 0".into(),
                );
            }
        }
        Ok(())
    }
}
