//! Every fixture in `tests/broken/` must be rejected with a diagnostic at an exact position.
//!
//! A fixture's first line is `# expect: LINE:COL SUBSTRING`: among its diagnostics, one must be
//! at exactly LINE:COL and contain SUBSTRING. Fixtures that cannot carry a comment (an empty
//! file, binary garbage) have the same line in `NAME.expect` beside them.

use std::fs;
use std::path::{Path, PathBuf};

struct Expect {
    line: usize,
    col: usize,
    needle: String,
}

fn parse_expect(text: &str, file: &Path) -> Expect {
    let rest = text
        .trim_end()
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| {
            panic!(
                "{}: first line must be `# expect: LINE:COL TEXT`",
                file.display()
            )
        });
    let (pos, needle) = rest.split_once(' ').expect("`LINE:COL TEXT`");
    let (line, col) = pos.split_once(':').expect("`LINE:COL`");
    Expect {
        line: line.parse().expect("LINE is a number"),
        col: col.parse().expect("COL is a number"),
        needle: needle.to_owned(),
    }
}

fn expectation(file: &Path) -> Expect {
    let side = file.with_extension("expect");
    if side.exists() {
        let text = fs::read_to_string(&side).unwrap();
        return parse_expect(&format!("# expect: {}", text.trim()), &side);
    }
    let bytes = fs::read(file).unwrap();
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    parse_expect(
        std::str::from_utf8(first).expect("expect line is UTF-8"),
        file,
    )
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_broken_fixture_reports_its_error_at_its_position() {
    let files = fixtures();
    assert!(files.len() >= 20, "only {} fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let want = expectation(file);
        let err = match conf::load(file) {
            Ok(_) => {
                failures.push(format!("{}: accepted, expected an error", file.display()));
                continue;
            }
            Err(e) => e,
        };
        let diags = err.diagnostics();
        assert!(
            !diags.is_empty(),
            "{}: error without diagnostics: {err}",
            file.display()
        );
        let hit = diags
            .iter()
            .any(|d| d.line == want.line && d.col == want.col && d.message.contains(&want.needle));
        if !hit {
            failures.push(format!(
                "{}: want {}:{} containing {:?}, got:\n{err}",
                file.display(),
                want.line,
                want.col,
                want.needle
            ));
        }
        // Every diagnostic is one line naming this file, and the whole error displays one
        // line per diagnostic.
        for d in diags {
            assert_eq!(d.path, *file);
            assert!(!d.message.contains('\n'), "multi-line message: {d}");
            assert!(d.line >= 1 && d.col >= 1, "{d}");
        }
        assert_eq!(err.to_string().lines().count(), diags.len(), "{err}");
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn display_is_path_line_col_field_message() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/weight_zero.toml");
    let err = conf::load(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:14:10: service[0].backend[0].weight: weight 0 is out of range 1..=10000",
            file.display()
        )
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let path = Path::new("/nonexistent/fulcrum.toml");
    match conf::load(path) {
        Err(conf::ConfigError::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected ConfigError::Io, got {other:?}"),
    }
}

#[test]
fn garbage_never_panics() {
    // Cheap deterministic fuzzing: truncations and byte flips of a valid file must give a
    // Config or diagnostics, never a panic.
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dsr.toml"))
        .unwrap();
    let bytes = text.as_bytes();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..bytes.len() {
        if let Ok(prefix) = std::str::from_utf8(&bytes[..i]) {
            let _ = conf::parse(prefix, Path::new("t.toml"));
        }
    }
    for _ in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut b = bytes.to_vec();
        let at = (state as usize) % b.len();
        b[at] = (state >> 32) as u8;
        if let Ok(s) = std::str::from_utf8(&b) {
            let _ = conf::parse(s, Path::new("t.toml"));
        }
    }
}

/// Nine misspelt keys, one in each of several tables (two of them required keys), are nine
/// errors of one run, each with the key meant.
#[test]
fn nine_typos_are_nine_errors_in_one_run() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/nine_typos.toml");
    let err = conf::load(&file).unwrap_err();
    let diags = err.diagnostics();
    println!("{err}");
    assert_eq!(diags.len(), 9, "{err}");
    for (d, meant) in diags.iter().zip([
        "workers",
        "idle_sleep_us",
        "hash_seed",
        "tcp_established",
        "device",
        "addresses",
        "protocol",
        "address",
        "weight",
    ]) {
        assert!(
            d.message.ends_with(&format!("did you mean `{meant}`?")),
            "{d}"
        );
    }
}

/// Unknown keys and wrong types no longer stop the run: the semantic errors of the same file
/// come with them, and a key of the wrong type is not taken for absent by later checks.
#[test]
fn shape_and_value_errors_in_one_run() {
    let text = "[dpdk]\nbrust = 16\nburst = 0\n\
                [[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\naddresses = \"10.0.0.2/24\"\n\
                [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = \"80\"\n\
                [[service]]\nname = \"web2\"\nvip = \"10.0.0.100\"\nport = 80\n\
                [[service.backend]]\nname = \"b1\"\naddress = \"10.0.0.11\"\nweight = 0\n";
    let err = conf::parse(text, Path::new("t.toml")).unwrap_err();
    let got: Vec<(usize, &str)> = err
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "dpdk.brust"),
            (3, "dpdk.burst"),
            (7, "port[0].addresses"),
            (11, "service[0].port"),
            (19, "service[1].backend[0].weight"),
        ],
        "{err}"
    );
}

/// A table missing a required key (or holding one of the wrong type) does not stop the
/// semantic checks of the rest, and adds no errors of its own beyond the shape's.
#[test]
fn missing_required_keys_do_not_stop_the_other_checks() {
    let text = "[[port]]\nname = 5\ndevice = \"net_null0\"\naddresses = [\"10.0.0.2/24\"]\n\
                [[service]]\nname = \"web\"\nport = 80\n\
                [[service.backend]]\nname = \"b1\"\nweight = 0\n\
                [[service.backend]]\nname = \"b2\"\naddress = \"10.0.0.12\"\n\
                [[service]]\nname = \"web2\"\nvip = \"10.0.0.101\"\nport = 70000\n";
    let err = conf::parse(text, Path::new("t.toml")).unwrap_err();
    println!("{err}");
    let got: Vec<(usize, &str)> = err
        .diagnostics()
        .iter()
        .map(|d| (d.line, d.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "port[0].name"),
            (5, "service[0]"),
            (8, "service[0].backend[0]"),
            (10, "service[0].backend[0].weight"),
            (17, "service[1].port"),
        ],
        "{err}"
    );
}
