//! `fulcrum check`: exit 0 and a one-line summary on every example config; exit 1 and every
//! error with its line and column on every broken fixture.

use testkit::{fulcrum, repo};

#[test]
fn examples_pass() {
    let dir = repo().join("conf/examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("examples") {
        let path = e.expect("entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let out = fulcrum()
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
        assert!(stdout.contains(": ok: "), "{stdout}");
        n += 1;
    }
    assert!(n >= 3, "only {n} examples");
}

/// Each fixture says on its first line (or in a `.expect` file beside it) where its error is
/// and what it says; the CLI must print exactly that position and exit 1.
#[test]
fn broken_configs_fail_with_line_and_column() {
    let dir = repo().join("conf/tests/broken");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fixtures") {
        let path = e.expect("entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        let expect_line = match text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
        {
            Some(l) => l.to_string(),
            None => {
                let side = path.with_extension("expect");
                std::fs::read_to_string(&side)
                    .unwrap_or_else(|_| panic!("{} has no expectation", path.display()))
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("# expect: ")
                            .map(str::to_string)
                            .or(Some(l.to_string()))
                    })
                    .expect("expectation")
            }
        };
        let (pos, msg) = expect_line.split_once(' ').expect("LINE:COL message");
        let out = fulcrum()
            .arg("check")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(1),
            "{} must fail with exit 1",
            path.display()
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!("{}:{pos}: ", path.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&want) && l.contains(msg.trim())),
            "{}: expected a line starting {want:?} containing {msg:?}, got:\n{stderr}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 20, "only {n} fixtures");
}

#[test]
fn version_names_dpdk() {
    let out = fulcrum().arg("--version").output().expect("run");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(s.starts_with("fulcrum 0."), "{s}");
    assert!(s.contains("DPDK 22.11"), "{s}");
}
