//! YAML in the tests as a user writes it: [`yaml!`] turns a raw string literal, indented with the
//! code around it, into the text a manifest or config file holds.

/// The text of a raw string literal as a file would hold it, with `{key}` placeholders filled:
///
/// - the literal starts with a line break and ends with one followed by the closing line's
///   indentation; both are dropped, so the text's first line is line 1 of the file;
/// - the indentation its lines share is removed, and blank lines become empty;
/// - `{key}` is replaced by the value given as `key = value` (or `key` alone, for a variable or
///   constant of that name), written with `Display`; other braces are YAML's own (`{}`,
///   `{name: app}`), never doubled;
/// - a placeholder alone on its line takes a block of YAML: each line of the value is indented
///   to the placeholder's column, and an empty value removes the line.
///
/// A key its text does not use fails the test, so a misspelt placeholder cannot go unnoticed.
///
/// ```ignore
/// let pod = yaml!(
///     r#"
///     apiVersion: v1
///     kind: Pod
///     metadata:
///       name: {name}
///     spec:
///       {extra}
///       containers:
///       - {name: app, image: {BUSYBOX}}
///     "#,
///     name = "web",
///     extra = "hostNetwork: true",
///     BUSYBOX,
/// );
/// ```
macro_rules! yaml {
    (@value $key:ident) => {
        $key
    };
    (@value $key:ident = $value:expr) => {
        $value
    };
    ($text:literal $(, $key:ident $(= $value:expr)?)* $(,)?) => {
        $crate::support::template::fill(
            $text,
            &[$((stringify!($key), $crate::support::yaml!(@value $key $(= $value)?).to_string())),*],
        )
    };
}
pub(crate) use yaml;

/// What [`yaml!`] does with its literal and values.
///
/// # Panics
///
/// When the literal does not start and end with a line break, or a value is not used, or a
/// value of several lines is not alone on its line.
pub fn fill(literal: &str, values: &[(&str, String)]) -> String {
    let body = literal.strip_prefix('\n').expect("the YAML starts on the line after r#\"");
    let (body, closing) = body.rsplit_once('\n').expect("the YAML ends with a line break");
    assert!(closing.trim_start_matches(' ').is_empty(), "\"# closes the YAML on a line of its own, not after {closing:?}");
    let lines: Vec<&str> = body.split('\n').collect();
    let blank = |line: &str| line.trim_start_matches(' ').is_empty();
    let indent = lines.iter().filter(|l| !blank(l)).map(|l| l.len() - l.trim_start_matches(' ').len()).min().unwrap_or(0);
    let mut used = vec![false; values.len()];
    let mut text = String::with_capacity(body.len());
    for line in lines {
        if blank(line) {
            text.push('\n');
            continue;
        }
        let line = &line[indent..];
        let content = line.trim_start_matches(' ');
        let block = values.iter().position(|(key, _)| content.strip_prefix('{').and_then(|c| c.strip_suffix('}')) == Some(*key));
        match block {
            Some(i) => {
                used[i] = true;
                let value = &values[i].1;
                let column = &line[..line.len() - content.len()];
                for value_line in value.strip_suffix('\n').unwrap_or(value).split('\n').filter(|_| !value.is_empty()) {
                    if !value_line.is_empty() {
                        text.push_str(column);
                    }
                    text.push_str(value_line);
                    text.push('\n');
                }
            }
            None => {
                text.push_str(&inline(line, values, &mut used));
                text.push('\n');
            }
        }
    }
    for ((key, _), used) in values.iter().zip(used) {
        assert!(used, "{{{key}}} is not in the YAML");
    }
    text
}

/// `line` with each `{key}` replaced by its value.
fn inline(line: &str, values: &[(&str, String)], used: &mut [bool]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        rest = &rest[open..];
        let key = rest[1..].find('}').map(|close| &rest[1..=close]);
        match key.and_then(|key| values.iter().position(|(k, _)| *k == key)) {
            Some(i) => {
                let value = &values[i].1;
                assert!(!value.contains('\n'), "{{{}}} has several lines: it stands alone on its line", values[i].0);
                out.push_str(value);
                used[i] = true;
                rest = &rest[values[i].0.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// `super::fill` in full: the benchmarks share this module and build it without a test harness,
// where a `use` in here would be unused.
#[cfg(test)]
mod tests {
    #[test]
    fn the_shared_indentation_and_the_literals_own_line_breaks_go() {
        let text = "
            apiVersion: v1
            metadata:
              name: web

            spec: {}
        ";
        assert_eq!(super::fill(text, &[]), "apiVersion: v1\nmetadata:\n  name: web\n\nspec: {}\n");
    }

    #[test]
    fn values_fill_their_placeholders_and_yamls_braces_stay() {
        let text = "
            metadata: {name: {name}, labels: {app: {name}}}
            command: [sh, -c, 'echo ${HOME}']
        ";
        let filled = super::fill(text, &[("name", "web".into())]);
        assert_eq!(filled, "metadata: {name: web, labels: {app: web}}\ncommand: [sh, -c, 'echo ${HOME}']\n");
    }

    #[test]
    fn a_block_is_indented_to_its_placeholder_and_an_empty_one_leaves_no_line() {
        let text = "
            spec:
              {extra}
              containers: []
        ";
        let extra = "hostNetwork: true\nvolumes:\n- name: data\n\n  emptyDir: {}\n".to_owned();
        assert_eq!(
            super::fill(text, &[("extra", extra)]),
            "spec:\n  hostNetwork: true\n  volumes:\n  - name: data\n\n    emptyDir: {}\n  containers: []\n"
        );
        assert_eq!(super::fill(text, &[("extra", String::new())]), "spec:\n  containers: []\n");
    }

    #[test]
    #[should_panic(expected = "{nmae} is not in the YAML")]
    fn a_value_its_text_does_not_use_fails() {
        super::fill("\n  name: {name}\n", &[("nmae", "web".into())]);
    }

    #[test]
    #[should_panic(expected = "{extra} has several lines")]
    fn a_block_inside_a_line_fails() {
        super::fill("\n  spec: {extra}\n", &[("extra", "a: 1\nb: 2".into())]);
    }
}
