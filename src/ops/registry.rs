//! The registry: every operation's spec, and the one place a name is mapped to its code.

use serde_json::Value;

use super::{
    Invocation, OpError, OpSpec, Ops, Output, agents, automations, instance_admin, instance_tools,
    instances, pairing, parse, secrets, skills, system, webhooks, workspace,
};

/// Every operation, in the order help lists them.
pub static SPECS: &[OpSpec] = &[
    system::HELP,
    system::STATUS,
    agents::LIST,
    agents::CREATE,
    agents::UPDATE,
    agents::DELETE,
    agents::USE,
    instances::LIST,
    instances::CREATE,
    instances::DELETE,
    instances::START,
    instances::STOP,
    instances::RESTART,
    instance_admin::SETTINGS,
    instance_admin::UPDATE,
    instance_admin::CLONE,
    instance_tools::LOGS,
    instance_tools::EXEC,
    instance_tools::FILE_LIST,
    instance_tools::FILE_READ,
    instance_tools::FILE_WRITE,
    system::ACTIVITY,
    pairing::PAIR,
    secrets::LIST,
    secrets::CREATE,
    secrets::ROTATE,
    secrets::GRANT,
    secrets::REVOKE,
    secrets::DELETE,
    automations::LIST,
    automations::CREATE,
    automations::UPDATE,
    automations::ENABLE,
    automations::DISABLE,
    automations::DELETE,
    automations::RUN,
    automations::HISTORY,
    webhooks::LIST,
    webhooks::CREATE,
    webhooks::ENABLE,
    webhooks::DISABLE,
    webhooks::ROTATE,
    webhooks::DELETE,
    skills::LIST,
    skills::WRITE,
    skills::PREVIEW,
    skills::INSTALL,
    skills::UPDATE,
    skills::UNINSTALL,
    skills::TEST,
    workspace::RUN,
    workspace::READ,
    workspace::WRITE,
    workspace::LIST,
];

impl Ops {
    pub(super) async fn dispatch(
        &self,
        spec: &'static OpSpec,
        inv: &Invocation,
        args: Value,
    ) -> Result<Output, OpError> {
        match spec.name {
            "help" => system::help(self, inv).await,
            "status" => system::status(self).await,
            "pair" => pairing::pair(self, inv, parse(spec, args)?).await,
            "activity_read" => system::activity(self, parse(spec, args)?).await,
            "agent_list" => agents::list(self).await,
            "agent_create" => agents::create(self, parse(spec, args)?).await,
            "agent_update" => agents::update(self, parse(spec, args)?).await,
            "agent_delete" => agents::delete(self, parse(spec, args)?).await,
            "agent_use" => agents::use_agent(self, inv, parse(spec, args)?).await,
            "instance_list" => instances::list(self).await,
            "instance_create" => instances::create(self, parse(spec, args)?).await,
            "instance_delete" => instances::delete(self, parse(spec, args)?).await,
            "instance_start" => {
                instances::fleet(self, spec, instances::Action::Start, parse(spec, args)?).await
            }
            "instance_stop" => {
                instances::fleet(self, spec, instances::Action::Stop, parse(spec, args)?).await
            }
            "instance_restart" => {
                instances::fleet(self, spec, instances::Action::Restart, parse(spec, args)?).await
            }
            "instance_settings" => instance_admin::settings(self, parse(spec, args)?).await,
            "instance_update" => instance_admin::update(self, parse(spec, args)?).await,
            "instance_clone" => instance_admin::clone(self, parse(spec, args)?).await,
            "instance_logs" => instance_tools::logs(self, parse(spec, args)?).await,
            "instance_exec" => instance_tools::exec(self, inv, parse(spec, args)?).await,
            "file_list" => instance_tools::file_list(self, parse(spec, args)?).await,
            "file_read" => instance_tools::file_read(self, parse(spec, args)?).await,
            "file_write" => instance_tools::file_write(self, parse(spec, args)?).await,
            "secret_list" => secrets::list(self).await,
            "secret_create" => secrets::create(self, parse(spec, args)?).await,
            "secret_rotate" => secrets::rotate(self, parse(spec, args)?).await,
            "secret_grant" => secrets::grant(self, parse(spec, args)?).await,
            "secret_revoke" => secrets::revoke(self, parse(spec, args)?).await,
            "secret_delete" => secrets::delete(self, parse(spec, args)?).await,
            "automation_list" => automations::list(self).await,
            "automation_create" => automations::create(self, inv, parse(spec, args)?).await,
            "automation_update" => automations::update(self, parse(spec, args)?).await,
            "automation_enable" => automations::set_enabled(self, parse(spec, args)?, true).await,
            "automation_disable" => automations::set_enabled(self, parse(spec, args)?, false).await,
            "automation_delete" => automations::delete(self, parse(spec, args)?).await,
            "automation_run" => automations::run_now(self, parse(spec, args)?).await,
            "automation_history" => automations::history(self, parse(spec, args)?).await,
            "webhook_list" => webhooks::list(self).await,
            "webhook_create" => webhooks::create(self, inv, parse(spec, args)?).await,
            "webhook_enable" => webhooks::set_enabled(self, parse(spec, args)?, true).await,
            "webhook_disable" => webhooks::set_enabled(self, parse(spec, args)?, false).await,
            "webhook_rotate" => webhooks::rotate(self, parse(spec, args)?).await,
            "webhook_delete" => webhooks::delete(self, parse(spec, args)?).await,
            "skill_list" => skills::list(self).await,
            "skill_write" => skills::write(self, inv, parse(spec, args)?).await,
            "skill_preview" => skills::preview(self, parse(spec, args)?).await,
            "skill_install" => skills::install(self, parse(spec, args)?).await,
            "skill_update" => skills::update(self, parse(spec, args)?).await,
            "skill_uninstall" => skills::uninstall(self, parse(spec, args)?).await,
            "skill_test" => skills::test(self, inv, parse(spec, args)?).await,
            "run_command" => workspace::run(self, inv, parse(spec, args)?).await,
            "read_file" => workspace::read(self, inv, parse(spec, args)?).await,
            "write_file" => workspace::write(self, inv, parse(spec, args)?).await,
            "list_files" => workspace::list(self, inv, parse(spec, args)?).await,
            other => Err(OpError::Unknown(other.to_string())),
        }
    }
}
