//! `fulcrum check` as an operator meets it on a badly broken file: every error in one run
//! (nine typos are nine errors), and in time and output that grow linearly with the file,
//! however many errors it holds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn check(path: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run fulcrum check");
    (out, started.elapsed())
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fulcrum-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    dir.join(name)
}

#[test]
fn nine_typos_are_nine_errors_in_one_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tests/broken/nine_typos.toml");
    let (out, _) = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 9, "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("unknown key") && l.contains("did you mean")),
        "{stderr}"
    );
}

/// A valid head, then `errors / 3` backends each with three errors: a weight out of range, an
/// unknown key and a bad address (every 100th a 4 KiB string, to be echoed only in part).
fn broken_config(errors: usize) -> String {
    let mut s = String::from(
        "[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\naddresses = [\"10.0.0.2/16\"]\n\
         [[service]]\nname = \"web\"\nvip = \"10.0.0.100\"\nport = 80\n",
    );
    let long = "x".repeat(4096);
    for i in 0..errors / 3 {
        let address = if i % 100 == 0 {
            long.clone()
        } else {
            format!("10.0.{}.{}.9", 1 + i / 250, 1 + i % 250)
        };
        s.push_str(&format!(
            "[[service.backend]]\nname = \"b{i}\"\naddress = \"{address}\"\nweight = 0\nwieght = 5\n"
        ));
    }
    s
}

/// Best of `n` runs (the machine is shared), and the last run's output.
fn best_check(path: &Path, n: usize) -> (Output, Duration) {
    let mut best = Duration::MAX;
    let mut output = None;
    for _ in 0..n {
        let (out, took) = check(path);
        best = best.min(took);
        output = Some(out);
    }
    (output.expect("ran"), best)
}

/// Time and output of `check` grow with the file, not with the square of its errors; the
/// output is bounded whatever the count. Timings are printed, net of a valid file's check
/// (process start); the bound is generous: 16x the errors may take up to 64x the time (a
/// quadratic cost takes 256x), not a figure of absolute speed.
#[test]
fn check_time_and_output_are_linear_in_the_errors() {
    let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/examples/minimal.toml");
    let (_, start) = best_check(&minimal, 5);
    println!("check of a valid file: {:.1} ms", start.as_secs_f64() * 1e3);
    let mut runs = Vec::new();
    for errors in [999usize, 3_999, 15_999] {
        let path = scratch(&format!("errors-{errors}.toml"));
        let text = broken_config(errors);
        std::fs::write(&path, &text).expect("write");
        let (out, took) = best_check(&path, 5);
        let net = took.saturating_sub(start).max(Duration::from_millis(1));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1));
        let lines: Vec<&str> = stderr.lines().collect();
        let last = lines.last().copied().unwrap_or("");
        println!(
            "check: {errors} errors, {} KiB file: {:.1} ms ({:.1} ms net), {} lines / {} bytes \
             of output; last: {last}",
            text.len() / 1024,
            took.as_secs_f64() * 1e3,
            net.as_secs_f64() * 1e3,
            lines.len(),
            stderr.len()
        );
        // At most 100 diagnostics, then one line counting the rest.
        assert_eq!(lines.len(), 101, "{stderr}");
        assert!(
            last.contains(&format!("and {} more error(s)", errors - 100)),
            "{last}"
        );
        // The 4 KiB values are named by their beginning.
        assert!(stderr.len() < 100 * 400, "{} bytes", stderr.len());
        runs.push((errors, net));
    }
    for pair in runs.windows(2) {
        let ((e0, t0), (e1, t1)) = (pair[0], pair[1]);
        println!(
            "{e0} -> {e1} errors: time x{:.1}",
            t1.as_secs_f64() / t0.as_secs_f64()
        );
    }
    if let Some(dir) = scratch("x").parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let ((e0, t0), (e1, t1)) = (runs[0], runs[2]);
    let ratio = t1.as_secs_f64() / t0.as_secs_f64();
    println!("{e0} -> {e1} errors: time x{ratio:.1}");
    assert!(
        ratio < 64.0,
        "{e0} -> {e1} errors took x{ratio:.1} the time: not linear"
    );
}
