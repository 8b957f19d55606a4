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

/// The source trees whose files are held to [`MAX_NON_TEST_LINES`].
const SIZED_TREES: [&str; 4] = ["conf/src", "dataplane/src", "slowpath/src", "src"];

/// Most lines a source file of [`SIZED_TREES`] may hold outside its `#[cfg(test)]` items
/// (issue 14): beyond it, a file does several jobs and a reader no longer finds a thing by
/// its name. Split it by concern into sibling files.
const MAX_NON_TEST_LINES: usize = 700;

/// `src` with every comment, string and character literal blanked to spaces (newlines kept),
/// so that braces and attributes can be found in what remains: the code.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            // Raw strings: r"..", r#".."#, br#".."#.
            b'r' | b'b'
                if (i == 0 || !ident(b[i - 1])) && {
                    let mut j = i + usize::from(b[i] == b'b');
                    j += usize::from(b.get(j) == Some(&b'r'));
                    while b.get(j) == Some(&b'#') {
                        j += 1;
                    }
                    b.get(j) == Some(&b'"') && b[i..j].contains(&b'r')
                } =>
            {
                let mut j = i;
                while b[j] != b'#' && b[j] != b'"' {
                    j += 1;
                }
                let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
                let mut close = vec![b'"'];
                close.extend(std::iter::repeat_n(b'#', hashes));
                i = j + hashes + 1;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i = (i + close.len()).min(b.len());
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
            }
            // A character literal ('x', '\n', '\u{7f}'); a lifetime ('a) is code.
            b'\'' if b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
            }
            _ => {
                i += 1;
                continue;
            }
        }
        blank(&mut out, start, i.min(b.len()));
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lines of `src` outside its `#[cfg(test)]` items (a test module inline or declared, a
/// test-only `use` or function); a file that is `#![cfg(test)]` has none.
fn non_test_lines(src: &str) -> usize {
    let code = code_only(src);
    if code.contains("#![cfg(test)]") {
        return 0;
    }
    let b = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count();
    let mut test_lines = vec![false; code.lines().count() + 1];
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        // The item ends at its first `;` outside braces, or where its first brace closes.
        let mut depth = 0usize;
        let mut end = start;
        for (i, &c) in b.iter().enumerate().skip(start) {
            end = i;
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                b';' if depth == 0 => break,
                _ => {}
            }
        }
        for l in &mut test_lines[line_of(start)..=line_of(end)] {
            *l = true;
        }
        from = end + 1;
    }
    src.lines().count() - test_lines.iter().filter(|&&t| t).count()
}

/// The files `src` (the file at `file`) declares as test-only modules
/// (`#[cfg(test)] mod tests;`, with or without `#[path = "..."]`).
fn test_module_files(file: &Path, src: &str) -> Vec<std::path::PathBuf> {
    let dir = file.parent().expect("a file is in a folder");
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    // `lib.rs`, `main.rs` and `mod.rs` declare modules in their own folder; `x.rs` in `x/`.
    let module_dir = if ["lib", "main", "mod"].contains(&stem) {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let mut files = Vec::new();
    let mut lines = src.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "#[cfg(test)]" {
            continue;
        }
        let mut path = None;
        for next in lines.by_ref() {
            if let Some(p) = next
                .strip_prefix("#[path = \"")
                .and_then(|p| p.strip_suffix("\"]"))
            {
                path = Some(dir.join(p));
            } else if next.starts_with("#[") {
                continue;
            } else {
                let name = next
                    .trim_start_matches("pub(crate) ")
                    .trim_start_matches("pub ")
                    .strip_prefix("mod ")
                    .and_then(|n| n.strip_suffix(';'));
                if let Some(name) = name {
                    files.push(path.take().unwrap_or_else(|| {
                        let flat = module_dir.join(format!("{name}.rs"));
                        if flat.exists() {
                            flat
                        } else {
                            module_dir.join(name).join("mod.rs")
                        }
                    }));
                }
                break;
            }
        }
    }
    files
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_exceeds_its_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for tree in SIZED_TREES {
        rust_files(&root.join(tree), &mut files);
    }
    let sources: Vec<(std::path::PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let text =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, text)
        })
        .collect();
    let test_only: Vec<std::path::PathBuf> = sources
        .iter()
        .flat_map(|(f, text)| test_module_files(f, text))
        .collect();
    for t in &test_only {
        assert!(t.exists(), "test module file {} not found", t.display());
    }
    let mut sizes: Vec<(usize, &Path)> = sources
        .iter()
        .filter(|(f, _)| !test_only.contains(f))
        .map(|(f, text)| (non_test_lines(text), f.strip_prefix(root).unwrap_or(f)))
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    println!(
        "{} source files ({} test-only files left out); the largest, in non-test lines:",
        sizes.len(),
        test_only.len()
    );
    for (n, f) in sizes.iter().take(8) {
        println!("{n:6} {}", f.display());
    }
    assert!(sizes.len() >= 50, "only {} files found", sizes.len());
    let over: Vec<String> = sizes
        .iter()
        .filter(|(n, _)| *n > MAX_NON_TEST_LINES)
        .map(|(n, f)| format!("{} ({n})", f.display()))
        .collect();
    assert!(
        over.is_empty(),
        "files over {MAX_NON_TEST_LINES} non-test lines (split them by concern): {over:?}"
    );
}

#[test]
fn test_items_and_literals_are_not_counted() {
    let src = r##"//! doc
fn a() { let s = "}"; let c = '{'; let r = r#"}}"#; }
#[cfg(test)]
use x::y;
/* { */
#[cfg(test)]
#[allow(dead_code)]
mod tests {
    fn b<'a>(x: &'a str) { if true { let _ = "{"; } }
}
fn c() {}
"##;
    // The doc line, `fn a`, the block comment line and `fn c`.
    assert_eq!(non_test_lines(src), 4);
    assert_eq!(non_test_lines("#![cfg(test)]\nfn a() {}\n"), 0);
    let declared = test_module_files(
        Path::new("/x/neigh/nd.rs"),
        "#[cfg(test)]\n#[path = \"nd_tests.rs\"]\npub(crate) mod tests;\n#[cfg(test)]\nmod more;\n",
    );
    assert_eq!(
        declared,
        [
            Path::new("/x/neigh/nd_tests.rs"),
            Path::new("/x/neigh/nd/more/mod.rs")
        ]
    );
}
