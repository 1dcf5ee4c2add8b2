use super::*;

const GOOD: &str = "---\nname: repo-digest\ndescription: Summarize a repository's recent commits.\nlicense: MIT\nmetadata:\n  author: ops\n  version: 2\nallowed-tools: Bash Read\n---\n# Repo digest\n\nRun `git log`.\n";

#[test]
fn a_good_skill_parses() {
    let skill = parse("repo-digest", GOOD).unwrap();
    assert_eq!(skill.name, "repo-digest");
    assert_eq!(
        skill.description,
        "Summarize a repository's recent commits."
    );
    assert_eq!(skill.metadata["version"], "2");
    assert_eq!(skill.allowed_tools.as_deref(), Some("Bash Read"));
    assert!(skill.body.starts_with("# Repo digest"));
}

#[test]
fn front_matter_errors_name_the_field_and_the_line() {
    let missing = "---\ndescription: x\n---\nbody\n";
    assert!(matches!(parse("a", missing), Err(SkillError::Field { field, .. }) if field == "name"));

    let mismatch = "---\nname: other\ndescription: x\n---\n";
    let err = parse("repo-digest", mismatch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SKILL.md field `name` (line 2): \"other\" must equal the folder name \"repo-digest\""
    );

    let long = format!("---\nname: a\ndescription: {}\n---\n", "x".repeat(1025));
    let err = parse("a", &long).unwrap_err();
    assert!(
        err.to_string()
            .contains("field `description` (line 3): must be 1 to 1024 characters (it has 1025)"),
        "{err}"
    );

    let bad_yaml = "---\nname: a\ndescription: [unclosed\n---\n";
    let err = parse("a", bad_yaml).unwrap_err();
    assert!(
        matches!(err, SkillError::Syntax { line, .. } if line >= 3),
        "{err}"
    );

    assert!(matches!(
        parse("a", "no front matter"),
        Err(SkillError::Syntax { line: 1, .. })
    ));
    assert!(matches!(
        parse("a", "---\nname: a\n"),
        Err(SkillError::Syntax { .. })
    ));
    let unknown = "---\nname: a\ndescription: x\nversion: 3\n---\n";
    assert!(
        parse("a", unknown)
            .unwrap_err()
            .to_string()
            .contains("`version` (line 4)")
    );
    assert!(parse("Bad_Name", "---\nname: Bad_Name\ndescription: x\n---\n").is_err());
}

#[test]
fn files_stay_inside_the_skill() {
    let files = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert!(check_files(&files(&[("SKILL.md", GOOD), ("scripts/run.sh", "echo")])).is_ok());
    assert!(check_files(&files(&[("SKILL.md", GOOD), ("scripts/../../etc/x", "")])).is_err());
    assert!(check_files(&files(&[("SKILL.md", GOOD), ("notes.txt", "")])).is_err());
    assert!(check_files(&files(&[("scripts/run.sh", "echo")])).is_err());
    assert_ne!(
        hash(&files(&[("SKILL.md", "a")])),
        hash(&files(&[("SKILL.md", "b")]))
    );
}

#[test]
fn diffs_show_removed_and_added_lines() {
    assert!(line_diff("a\nb\n", "a\nb\n", 10).is_empty());
    assert_eq!(
        line_diff("a\nb\nc\n", "a\nB\nc\nd\n", 10),
        ["+ B", "- b", "+ d"]
    );
}

/// A bounded property test of the parser: arbitrary and mutated inputs never panic, and any
/// generated valid skill parses back to its name and description.
#[test]
fn the_parser_never_panics_and_round_trips_valid_skills() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet: Vec<char> = "abz09-_ :\n\t\"'#[]{}|>-—é\r\\---".chars().collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut cases = 0;
    while std::time::Instant::now() < deadline && cases < 20_000 {
        cases += 1;
        // Valid skill with random name and description.
        let len = 1 + (next() % 20) as usize;
        let name: String = (0..len)
            .map(|i| {
                if i % 5 == 4 {
                    '-'
                } else {
                    (b'a' + (next() % 26) as u8) as char
                }
            })
            .collect();
        let name = name.trim_matches('-').replace("--", "-");
        let description: String = (0..1 + next() % 80)
            .map(|_| (b'a' + (next() % 26) as u8) as char)
            .collect();
        let doc = format!("---\nname: {name}\ndescription: {description}\n---\nbody\n");
        if valid_name(&name) {
            let skill = parse(&name, &doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
            assert_eq!(
                (skill.name.as_str(), skill.description.as_str()),
                (name.as_str(), description.as_str())
            );
        }
        // Mutations and noise must give a result, never a panic.
        let mut bytes: Vec<char> = doc.chars().collect();
        for _ in 0..(next() % 6) {
            let at = (next() as usize) % (bytes.len() + 1);
            let c = alphabet[(next() as usize) % alphabet.len()];
            if next() % 2 == 0 && at < bytes.len() {
                bytes[at] = c;
            } else {
                bytes.insert(at.min(bytes.len()), c);
            }
        }
        let mutated: String = bytes.into_iter().collect();
        let _ = parse(&name, &mutated);
        let noise: String = (0..next() % 120)
            .map(|_| alphabet[(next() as usize) % alphabet.len()])
            .collect();
        let _ = parse("a", &noise);
    }
    assert!(cases > 100);
}
