//! The agent's config file: `Config::parse` then `validate` on any UTF-8 text. A
//! config that fails validation also goes through `Config::load` (from a scratch
//! file), whose error path locates the offending field in the text; a valid one does
//! not, as `load` would then read the key file the input names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use torua_agent::config::{Cli, Config};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("torua-fuzz-agent-{}.yaml", std::process::id()))
    })
}

fuzz_target!(|text: &str| {
    let config = match Config::parse(text, Path::new("fuzz.yaml")) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if config.validate().is_ok() {
        return;
    }
    let path = scratch();
    std::fs::write(path, text).expect("scratch file");
    let cli = Cli {
        config: Some(path.clone()),
        ..Cli::default()
    };
    match Config::load(&cli) {
        Ok(_) => panic!("load accepted a config that validate refused"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
