//! The coordinator's settings file: `Settings::from_yaml` on any UTF-8 text, then
//! `resolve` (defaults and range checks). Errors are fine; panics are not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use torua_coordinator::config::Settings;

fuzz_target!(|text: &str| {
    match Settings::from_yaml("fuzz.yaml", text) {
        Ok(settings) => {
            if let Err(e) = settings.resolve() {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
