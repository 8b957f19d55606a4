//! The commands README shows: every line of the fenced `sh` blocks under a heading, split as
//! a shell would, with the comment that says what it does. A test runs them, so README and
//! the program cannot drift apart.

/// One command line of a README `sh` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The innermost heading the block is under (without the `#`s).
    pub section: String,
    /// The command as written (without its comment).
    pub line: String,
    /// The command split into words as `sh` would (quotes removed).
    pub argv: Vec<String>,
    /// The comment after it, without the `#`.
    pub comment: String,
}

/// The commands in the `sh` blocks under `heading` and its subsections (up to the next
/// heading of the same or a higher level). Panics if there is no such heading.
pub fn commands(readme: &str, heading: &str) -> Vec<Shown> {
    let mut level = None;
    let mut section = String::new();
    let mut in_sh = false;
    let mut in_other_block = false;
    let mut pending = String::new();
    let mut shown = Vec::new();
    for raw in readme.lines() {
        let line = raw.trim_end();
        if in_sh || in_other_block {
            if line.trim_start().starts_with("```") {
                in_sh = false;
                in_other_block = false;
                continue;
            }
            if !in_sh {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            let (cmd, comment) = split_comment(&full);
            if cmd.trim().is_empty() {
                continue;
            }
            let argv = shlex::split(cmd).unwrap_or_else(|| panic!("README: cannot split {cmd:?}"));
            shown.push(Shown {
                section: section.clone(),
                line: cmd.trim().to_owned(),
                argv,
                comment: comment.trim().to_owned(),
            });
            continue;
        }
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            if level.is_some() && matches!(fence.trim(), "sh" | "shell" | "bash" | "console") {
                in_sh = true;
            } else {
                in_other_block = true;
            }
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            let title = line[hashes..].trim();
            match level {
                Some(l) if hashes <= l => break,
                Some(_) => section = title.to_owned(),
                None if title == heading => {
                    level = Some(hashes);
                    section = title.to_owned();
                }
                None => {}
            }
        }
    }
    assert!(level.is_some(), "README has no heading {heading:?}");
    shown
}

/// A command and its comment: the comment starts at a `#` outside quotes that begins a word.
fn split_comment(line: &str) -> (&str, &str) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return (&line[..i], &line[i + 1..]),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = r#"# Tool

```sh
scripts/demo.sh   # not under the heading
```

## Using it

```sh
tool check -c a.toml        # validate: FILE:LINE:COL
tool which -c FILE "10.1.2.3:40000 10.0.0.100:80 tcp"   # which backend # and why
```

Prose with `tool inline` is not a command.

```toml
[not] = "a command"
```

### Operating

```sh
tool ctl -c FILE drain web b2 \
    --now                       # continued
# a comment line alone

tool ctl stats --file /dev/shm/x-PID.counters
```

## Next

```sh
tool not-this
```
"#;

    #[test]
    fn commands_under_a_heading_and_its_subsections() {
        let c = commands(README, "Using it");
        let lines: Vec<&str> = c.iter().map(|s| s.line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "tool check -c a.toml",
                r#"tool which -c FILE "10.1.2.3:40000 10.0.0.100:80 tcp""#,
                "tool ctl -c FILE drain web b2      --now",
                "tool ctl stats --file /dev/shm/x-PID.counters",
            ]
        );
        assert_eq!(
            c[1].argv,
            [
                "tool",
                "which",
                "-c",
                "FILE",
                "10.1.2.3:40000 10.0.0.100:80 tcp"
            ]
        );
        assert_eq!(c[1].comment, "which backend # and why");
        assert_eq!(c[0].section, "Using it");
        assert_eq!(c[2].section, "Operating");
        assert_eq!(c[2].argv.last().map(String::as_str), Some("--now"));
        assert_eq!(c[3].comment, "");
    }

    #[test]
    fn only_the_subsection_when_asked() {
        let c = commands(README, "Operating");
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|s| s.section == "Operating"));
    }

    #[test]
    #[should_panic(expected = "no heading")]
    fn a_missing_heading_is_an_error() {
        commands(README, "Missing");
    }

    #[test]
    fn a_hash_inside_quotes_or_a_word_is_not_a_comment() {
        assert_eq!(
            split_comment(r#"a "b # c" d#e # f"#),
            (r#"a "b # c" d#e "#, " f")
        );
    }
}
