//! The UCI parser (`config::uci::parse`) and the validating config reader (`config::check`,
//! `config::parse`) on arbitrary text. Never panics; the two agree on validity; every error
//! names a line of the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wifipos::config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.matches('\n').count() + 1;
    let syntax = config::uci::parse(&text);
    if let Err(e) = &syntax {
        assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        assert!(!e.to_string().is_empty());
    }
    let report = config::check("fuzz.conf", &text);
    for e in &report.errors {
        assert!(
            e.line() <= lines,
            "error {e} on line {} of {lines}",
            e.line()
        );
        assert!(!e.to_string().is_empty());
    }
    match config::parse("fuzz.conf", &text) {
        Ok((cfg, _warnings)) => {
            assert!(syntax.is_ok(), "a syntax error was accepted");
            assert!(report.errors.is_empty());
            assert!(cfg.portal_url().starts_with("http://"));
            let _ = cfg.captive_api_url();
        }
        Err(e) => {
            assert!(!report.errors.is_empty());
            assert!(!e.to_string().is_empty());
        }
    }
});
