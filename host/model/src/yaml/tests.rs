//! The YAML 1.1 cases are go-yaml v2's own resolution table (`resolve.go`) and the forms
//! sigs.k8s.io/yaml's `YAMLToJSON` tests convert; the expected JSON is what the kubelet's
//! `yaml.ToJSON` produces for each.

use serde_json::json;

use super::*;

fn value(text: &str) -> Value {
    parse(text).unwrap().unwrap().value
}

#[test]
fn yaml_1_1_booleans_in_go_yaml_v2_spellings() {
    for spelling in ["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"] {
        assert_eq!(value(&format!("a: {spelling}\n")), json!({"a": true}), "{spelling}");
    }
    for spelling in ["n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"] {
        assert_eq!(value(&format!("a: {spelling}\n")), json!({"a": false}), "{spelling}");
    }
    // Other letter cases are plain strings to go-yaml v2, and quoting always makes a string.
    for spelling in ["yEs", "oN", "tRUE", "nO", "\"yes\"", "'on'"] {
        let expected = spelling.trim_matches(['"', '\'']);
        assert_eq!(value(&format!("a: {spelling}\n")), json!({"a": expected}), "{spelling}");
    }
}

#[test]
fn yaml_1_1_integers_octal_hex_and_underscores() {
    assert_eq!(value("mode: 0644\n"), json!({"mode": 420}));
    assert_eq!(value("mode: 0o644\n"), json!({"mode": 420}));
    assert_eq!(value("num: 1_000\n"), json!({"num": 1000}));
    assert_eq!(value("num: 0x1F\n"), json!({"num": 31}));
    assert_eq!(value("num: +12\n"), json!({"num": 12}));
    assert_eq!(value("num: -7\n"), json!({"num": -7}));
    assert_eq!(value("num: '0644'\n"), json!({"num": "0644"}));
    assert_eq!(value("num: !!str 0644\n"), json!({"num": "0644"}));
}

#[test]
fn floats_become_json_numbers_and_integral_ones_integers() {
    assert_eq!(value("a: 1e3\nb: 0.5\n"), json!({"a": 1000, "b": 0.5}));
    let err = parse("a: .inf\n").unwrap_err();
    assert_eq!(err.position, Some(Position { line: 1, column: 4 }));
    assert!(err.message.contains("a: .inf cannot be written as JSON"), "{}", err.message);
}

#[test]
fn nulls_and_timestamps() {
    assert_eq!(value("a: ~\nb: null\nc:\nd: 2001-12-14\n"), json!({"a": null, "b": null, "c": null, "d": "2001-12-14"}));
}

#[test]
fn keys_become_strings_as_sigs_yaml_writes_them() {
    assert_eq!(value("1: a\nyes: b\n"), json!({"1": "a", "true": "b"}));
    // So `y` and `n` are no key names in YAML 1.1 (no API field has either name).
    assert_eq!(value("y: 1\nn: 2\n"), json!({"true": 1, "false": 2}));
    let err = parse("? [a, b]\n: c\n").unwrap_err();
    assert!(err.message.contains("cannot be a key"), "{}", err.message);
}

#[test]
fn a_duplicate_key_keeps_the_last_value_and_is_reported() {
    let document = parse("a: 1\nb: 2\na: 3\n").unwrap().unwrap();
    assert_eq!(document.value, json!({"a": 3, "b": 2}));
    assert_eq!(document.duplicate_keys, vec![("a".to_owned(), Position { line: 3, column: 1 })]);
    assert_eq!(document.positions.lookup("a"), Some(Position { line: 3, column: 1 }));
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let text = "base: &b {one: 1, two: 2}\nderived:\n  <<: *b\n  two: 3\nlist: [*b]\n";
    assert_eq!(value(text), json!({"base": {"one": 1, "two": 2}, "derived": {"one": 1, "two": 3}, "list": [{"one": 1, "two": 2}]}));
}

#[test]
fn markers_comments_and_a_byte_order_mark_around_the_document() {
    let expected = json!({"a": 1});
    for text in [
        "---\na: 1\n",
        "a: 1\n---\n",
        "a: 1\n...\n",
        "a: 1\n---\n# the end\n",
        "# head\n---\na: 1\n---\n---\n",
        "\u{feff}a: 1\n",
        "\u{feff}---\na: 1\n",
        "--- # a comment on the marker line\na: 1\n",
        "%YAML 1.1\n---\na: 1\n",
    ] {
        let document = parse(text).unwrap().unwrap();
        assert_eq!(document.value, expected, "{text:?}");
        assert!(document.ignored.is_empty(), "{text:?}");
    }
    assert!(parse("# only a comment\n---\n...\n").unwrap().is_none());
    assert!(parse("").unwrap().is_none());
}

#[test]
fn the_first_document_is_read_and_the_others_are_named() {
    let text = "kind: Pod\nmetadata: {name: a}\n---\n\n# second\nkind: Service\nmetadata:\n  name: b\n--- [broken\n---\n- 1\n";
    let document = parse(text).unwrap().unwrap();
    assert_eq!(document.value, json!({"kind": "Pod", "metadata": {"name": "a"}}));
    assert_eq!(
        document.ignored,
        vec![
            IgnoredDocument { number: 2, position: Position { line: 3, column: 1 }, summary: Some("Service b".into()) },
            IgnoredDocument { number: 3, position: Position { line: 9, column: 1 }, summary: None },
            IgnoredDocument { number: 4, position: Position { line: 10, column: 1 }, summary: None },
        ]
    );
}

#[test]
fn a_marker_like_line_inside_content_is_not_a_split_when_indented() {
    let text = "a: |\n  ---\n  text\nb: 1\n";
    assert_eq!(value(text), json!({"a": "---\ntext\n", "b": 1}));
}

#[test]
fn syntax_errors_carry_the_files_line() {
    let err = parse("---\na: 1\nb: [x\n").unwrap_err();
    assert!(err.position.is_some_and(|p| p.line >= 3), "{err:?}");
    assert!(!err.message.contains(" at line "), "{}", err.message);
}

#[test]
fn typed_reads_name_the_field_and_its_line() {
    #[derive(Debug, serde::Deserialize)]
    struct Config {
        port: u16,
    }
    assert_eq!(from_str::<Config>("port: 0x50\n").unwrap().port, 80);
    let err = from_str::<Config>("# config\nport: eighty\n").unwrap_err();
    assert_eq!(err.position, Some(Position { line: 2, column: 1 }));
    assert!(err.message.starts_with("port: invalid type: string"), "{}", err.message);
}

#[test]
fn written_yaml_reads_back_the_same_under_yaml_1_1() {
    let strings = ["yes", "On", "y", "N", "off", "0644", "1_000", "0x1F", "~", "null", "true", "1e3", ".inf", "2001-12-14", ""];
    let value = json!({"strings": strings, "numbers": [420, 0.5, -7], "flags": [true, false], "nothing": null});
    let text = to_string(&value).unwrap();
    assert_eq!(parse(&text).unwrap().unwrap().value, value, "{text}");
}

#[test]
fn text_that_starts_with_a_brace_is_json_to_the_kubelet() {
    let json = "{\"kind\": \"Pod\",\n \"spec\": {\"hostNetwork\": true}}";
    let document = parse(json).unwrap().unwrap();
    assert_eq!(document.value, json!({"kind": "Pod", "spec": {"hostNetwork": true}}));
    assert_eq!(document.positions.lookup("spec.hostNetwork"), Some(Position { line: 2, column: 11 }));
    // YAML's flow style would take these; JSON, which the kubelet reads them as, does not.
    for (text, column) in [("{'kind': 'Pod'}", 2), ("{\"kind\": \"Pod\",}", 16), ("{\"kind\": \"Pod\"} trailing", 17)] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.position, Some(Position { line: 1, column }), "{text}: {err}");
    }
    // A byte order mark hides the brace from the kubelet's JSON check: read as YAML.
    assert_eq!(parse("\u{feff}{a: 1}").unwrap().unwrap().value, json!({"a": 1}));
}

#[test]
fn nesting_is_bounded_well_above_what_a_pod_needs() {
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
    assert!(parse(&format!("a: {}\n", nested(MAX_DEPTH))).is_ok());
    let err = parse(&format!("a: {}\n", nested(MAX_DEPTH + 1))).unwrap_err();
    assert!(err.message.contains("a manifest this deep, this large or with this many aliases is refused"), "{err}");
}

#[test]
fn an_alias_bomb_is_refused_by_its_node_count() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, previous) in ["b", "c", "d", "e", "f"].iter().zip(["a", "b", "c", "d", "e"]) {
        bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
    }
    let err = parse(&bomb).unwrap_err();
    assert!(err.message.contains("a manifest this deep, this large or with this many aliases is refused"), "{err}");
    let wide = format!("a: [{}]\n", vec!["x"; MAX_NODES / 2].join(", "));
    assert!(parse(&wide).is_ok());
}
