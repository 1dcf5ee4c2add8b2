//! Unit tests of the control surface's registry and access rules.

use super::*;

#[test]
fn every_spec_has_a_valid_object_schema_and_unique_name() {
    let mut names = std::collections::HashSet::new();
    for spec in SPECS {
        assert!(names.insert(spec.name), "duplicate {}", spec.name);
        let schema = (spec.schema)();
        assert_eq!(schema["type"], "object", "{}", spec.name);
        for p in spec.positional {
            assert!(schema["properties"].get(p).is_some(), "{}: {p}", spec.name);
        }
    }
}

#[test]
fn parses_chat_commands() {
    let (spec, args) = Ops::parse_command("/use@my_bot daniel").unwrap();
    assert_eq!(spec.name, "agent_use");
    assert_eq!(args, json!({ "agent": "daniel" }));
    let (spec, args) = Ops::parse_command("/agents").unwrap();
    assert_eq!((spec.name, args), ("agent_list", json!({})));
    assert!(Ops::parse_command("/nonsense").is_none());
    assert!(Ops::parse_command("hello").is_none());
}

#[test]
fn members_do_not_see_owner_operations() {
    let member = Caller::member("x");
    assert!(Ops::available_to(&member).all(|s| s.access == Access::Member));
    let owner = Ops::available_to(&Caller::owner("o")).count();
    let hidden = NOT_FOR_MODELS.len();
    assert_eq!(owner + Ops::workspace_tools().count() + hidden, SPECS.len());
}

#[test]
fn the_model_is_never_offered_an_operation_that_takes_a_secret_value() {
    let owner = Caller::owner("o");
    for spec in Ops::available_to(&owner).chain(Ops::workspace_tools()) {
        let schema = (spec.schema)();
        for key in SENSITIVE_ARGS {
            assert!(
                schema["properties"].get(key).is_none(),
                "{} takes {key}",
                spec.name
            );
        }
    }
}

#[test]
fn workspace_tools_need_an_agent_other_than_operator() {
    let spec = Ops::spec("run_command").unwrap();
    let mut inv = Invocation::new(Caller::owner("o"));
    assert!(!allowed(spec, &inv));
    inv.via_agent = Some(OPERATOR.into());
    assert!(!allowed(spec, &inv));
    inv.via_agent = Some("daniel".into());
    assert!(allowed(spec, &inv));
}
