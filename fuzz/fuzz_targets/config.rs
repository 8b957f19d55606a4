//! Config text: what `fulcrum check` does with a file's bytes (`conf::parse_bytes`: the UTF-8
//! check, the TOML parser, the shape check and every semantic validation) never panics, and
//! its answer prints without panicking: a refusal as at least one `FILE:LINE:COL` line, an
//! accepted config with at least one port. Seeds: conf/examples and conf/tests/broken.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.toml");
    match conf::parse_bytes(data, path) {
        Ok(cfg) => assert!(
            !cfg.ports.is_empty(),
            "a config without a port was accepted"
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.lines().any(|l| l.starts_with("fuzz.toml:")),
                "a refusal that names no location: {text}"
            );
        }
    }
});
