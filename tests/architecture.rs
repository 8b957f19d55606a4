//! ARCHITECTURE.md is a map of the code: every path it names in backticks must exist, so
//! that the map cannot drift from the house it describes.

use std::path::Path;

/// The backticked words of `text` that name a repository path: they contain a '/' or end in
/// a source or document suffix. Fenced code blocks (diagrams) and words with spaces (a
/// `// SAFETY:` line, a command) are not paths.
fn named_paths(text: &str) -> Vec<String> {
    const SUFFIXES: [&str; 5] = [".rs", ".md", ".toml", ".sh", ".py"];
    let mut paths = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Between the 1st and 2nd backtick, the 3rd and 4th, ...
        for word in line.split('`').skip(1).step_by(2) {
            if word.is_empty() || word.contains(char::is_whitespace) {
                continue;
            }
            if word.contains('/') || SUFFIXES.iter().any(|s| word.ends_with(s)) {
                paths.push(word.to_string());
            }
        }
    }
    paths
}

#[test]
fn every_path_architecture_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut paths = named_paths(&text);
    paths.sort();
    paths.dedup();
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| {
            let path = root.join(p.as_str());
            // `dir/` names a folder; anything else a file or a folder.
            if p.ends_with('/') {
                !path.is_dir()
            } else {
                !path.exists()
            }
        })
        .collect();
    println!(
        "ARCHITECTURE.md names {} distinct paths; {} missing",
        paths.len(),
        missing.len()
    );
    assert!(
        paths.len() >= 50,
        "only {} paths found: is the extraction broken?",
        paths.len()
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn extraction_finds_paths_and_skips_the_rest() {
    let text = "a `src/api.rs` and `dir/` and `Cargo.toml`, not `Pipeline::hit` or \
                `// SAFETY:`\n```text\n`fenced/path.rs`\n```\n`x.py`";
    assert_eq!(
        named_paths(text),
        ["src/api.rs", "dir/", "Cargo.toml", "x.py"]
    );
}
