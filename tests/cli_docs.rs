//! README documents every option `fulcrum run`, `check`, `replay`, `which`, `ctl` and each
//! `ctl` subcommand print in `--help`, and the `FULCRUM_LOG` variable: an option added to the command line without a line in README
//! fails here.

mod common;

use common::*;

#[test]
fn readme_documents_every_option_of_every_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut missing = Vec::new();
    let mut seen = 0;
    let ctl = [
        "status", "services", "backends", "which", "drain", "enable", "disable", "clear", "reload",
        "stats", "vrrp",
    ];
    let commands = ["run", "check", "replay", "which", "ctl"]
        .map(|c| vec![c])
        .into_iter()
        .chain(ctl.map(|c| vec!["ctl", c]));
    for cmd in commands {
        let out = must(fulcrum().args(&cmd).arg("--help"));
        let cmd = cmd.join(" ");
        let help = String::from_utf8(out.stdout).unwrap();
        for line in help.lines().map(str::trim_start) {
            if !line.starts_with('-') {
                continue;
            }
            // "-c, --config <FILE>  ..." or "--json  ...": the option's spellings.
            let spelling: String = line
                .split("  ")
                .next()
                .unwrap()
                .split(' ')
                .filter(|w| w.starts_with('-'))
                .collect::<Vec<_>>()
                .join(" ");
            let long = spelling
                .split(' ')
                .find(|w| w.starts_with("--"))
                .unwrap_or(&spelling)
                .trim_end_matches(',');
            seen += 1;
            if !readme.contains(&format!("`{long}")) && !readme.contains(&format!(" {long}")) {
                missing.push(format!("{cmd} {long}"));
            }
        }
    }
    println!("{seen} options in the commands' --help");
    assert!(
        seen >= 10,
        "fewer options than expected: is --help parsed right?"
    );
    assert!(missing.is_empty(), "not in README.md: {missing:?}");
    assert!(
        readme.contains("FULCRUM_LOG"),
        "FULCRUM_LOG is not documented"
    );
}
