//! A turn's model requests in the usage records: under the provider and model that answered,
//! with what caused them; the budget warning that a record may bring is handed back.

use super::Runner;

/// What caused a turn, for the usage records: an automation's or a webhook's run, else a chat.
pub(super) fn usage_source(caller: &str) -> &str {
    if caller.starts_with("automation:") || caller.starts_with("webhook:") {
        caller
    } else {
        "chat"
    }
}

impl Runner {
    /// Records what a CLI runtime reported for its turn (tokens and its own cost).
    pub(super) async fn record_cli_usage(
        &self,
        agent: &crate::store::Agent,
        conversation: i64,
        t: &super::runtime::Transcript,
    ) {
        if t.result.is_none() && t.input_tokens == 0 && t.output_tokens == 0 {
            return;
        }
        let tokens = crate::usage::Tokens {
            input: t.input_tokens,
            output: t.output_tokens,
            cache_read: t.cache_read_tokens,
            cache_write: t.cache_write_tokens,
        };
        let model = agent.model.clone().unwrap_or_else(|| agent.runtime.clone());
        self.inner
            .limits
            .meter
            .record_reported(
                &self.inner.store,
                &agent.name,
                Some(conversation),
                "chat",
                &agent.runtime,
                &model,
                tokens,
                t.cost_usd,
            )
            .await;
    }

    /// Records a model request's usage under the provider and model that answered (a fallback,
    /// maybe); returns them, and a budget warning to pass on when a limit passed 80%.
    pub(super) async fn record_usage(
        &self,
        response: &super::llm::ChatResponse,
        agent: &str,
        conversation: i64,
        source: &str,
        asked_model: &str,
    ) -> (String, String, Option<String>) {
        let limits = &self.inner.limits;
        let tokens = crate::usage::Tokens {
            input: response.input_tokens,
            output: response.output_tokens,
            cache_read: response.cache_read_tokens,
            cache_write: response.cache_write_tokens,
        };
        let provider = Some(response.provider.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or(&limits.provider)
            .to_string();
        let model = Some(response.model.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or(asked_model)
            .to_string();
        let warning = limits
            .meter
            .record(
                &self.inner.store,
                agent,
                Some(conversation),
                source,
                &provider,
                &model,
                tokens,
            )
            .await;
        (provider, model, warning)
    }
}
