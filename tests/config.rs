//! `/etc/config/wifipos` as the venue owner writes it: UCI quoting and comments read right,
//! every setting checked with a message that says the file, line, option and what is allowed,
//! defaults for everything, `wifiposd check-config` exit codes, and no panic on any input.

use std::process::Command;

use proptest::prelude::*;
use wifipos::config::{self, uci, Config, ConfigError, LogLevel, DEFAULT_UCI};

const FILE: &str = "/etc/config/wifipos";

fn errors(text: &str) -> Vec<String> {
    config::check(FILE, text)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn syntax(text: &str) -> String {
    uci::parse(text).unwrap_err().to_string()
}

#[test]
fn an_empty_section_means_every_default() {
    let r = config::check(FILE, "config wifipos 'main'\n");
    assert!(r.errors.is_empty() && r.warnings.is_empty());
    let c = r.config;
    assert_eq!(c, Config::default());
    assert_eq!(c.guest_iface, "br-guest");
    assert_eq!(c.portal_port, 2050);
    assert_eq!(c.database.to_str(), Some("/etc/wifipos/wifipos.db"));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.captive_api_url(), None);
    assert_eq!(c.https_port, 443);
}

#[test]
fn the_shipped_file_documents_every_option_and_sets_the_defaults() {
    let (cfg, warnings) = config::parse("default", DEFAULT_UCI).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg, Config::default());
    for option in config::KNOWN {
        assert!(
            DEFAULT_UCI.contains(&format!(" {option} ")),
            "{option} is not in files/etc/config/wifipos"
        );
    }
}

#[test]
fn a_full_config_with_every_kind_of_quoting_reads_right() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/uci/wifipos_full"
    ))
    .unwrap();
    let r = config::check("wifipos_full", &text);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let c = r.config;
    assert_eq!(c.venue, "Caf'e \"Nord\"");
    assert_eq!(c.language, "de");
    assert_eq!(c.portal_port, 2050);
    assert_eq!(c.trusted_keys.len(), 1);
    let garden: Vec<String> = c.garden.iter().map(|(a, l)| format!("{a}/{l}")).collect();
    assert_eq!(garden, ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"]);
    assert_eq!(c.trusted_macs[0].to_string(), "aa:bb:cc:dd:ee:ff");
    assert_eq!(c.blocked_macs[0].to_string(), "11:22:33:44:55:66");
    assert_eq!((c.max_connections, c.attempts_per_minute), (256, 5));
    assert_eq!((c.keep_days, c.keep_event_days), (30, 365));
    assert_eq!(c.log_level, LogLevel::Debug);
    let revoked: Vec<String> = c.revoked.iter().map(ToString::to_string).collect();
    assert_eq!(revoked, ["1a2b3c4d:42", "1a2b3c4d:7"]);
}

#[test]
fn crlf_blank_lines_comments_and_unnamed_sections_are_fine() {
    let text = "# saved on Windows\r\n\r\nconfig wifipos\r\n\toption venue 'Cafe' # the name\r\n\r\n\tlist garden '192.0.2.0/24'\r\n";
    let r = config::check(FILE, text);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.config.venue, "Cafe");
    assert_eq!(r.config.garden.len(), 1);
}

#[test]
fn uci_quoting_escapes_and_adjacent_parts() {
    let pkg = uci::parse(concat!(
        "config t 'n'\n",
        "\toption a 'single \"keeps\" \\backslashes'\n",
        "\toption b \"double \\\"escapes\\\" \\\\ and \\$\"\n",
        "\toption c 'a'\"b\"c'd e'\n",
        "\toption d it\\'s\n",
        "\tlist e 'one'\n",
        "\tlist e \"two\"\n",
    ))
    .unwrap();
    let s = &pkg.sections[0];
    let v = |n: &str| s.get(n).unwrap().values().collect::<Vec<_>>();
    assert_eq!(v("a"), ["single \"keeps\" \\backslashes"]);
    assert_eq!(v("b"), ["double \"escapes\" \\ and $"]);
    assert_eq!(v("c"), ["abcd e"]);
    assert_eq!(v("d"), ["it's"]);
    assert_eq!(v("e"), ["one", "two"]);
    assert!(s.get("e").unwrap().is_list);
}

#[test]
fn broken_files_get_messages_that_say_where_and_what() {
    let cases = [
        (
            "config wifipos 'main'\n\toption venue 'Cafe Nord\n\toption language 'en'\n",
            "line 3: a ' quote is opened but never closed (the file ends inside it)",
        ),
        (
            "config wifipos\n\toption venue \"Cafe\n",
            "line 2: a \" quote is opened but never closed (the file ends inside it)",
        ),
        (
            "# no section yet\noption venue 'Cafe'\n",
            "line 2: 'option' comes before any 'config' line: every option belongs to a section",
        ),
        (
            "config wifipos\n\tlist\n",
            "line 2: 'list' needs a name, e.g. option venue 'Cafe Nord'",
        ),
        (
            "config wifipos\n\toption 'my venue' x\n",
            "line 2: 'my venue' is not a valid name: use only letters, digits and _",
        ),
        (
            "config\n",
            "line 1: 'config' needs a section type, e.g. config wifipos 'main'",
        ),
        (
            "config wifipos\n\toption venue Cafe Nord\n",
            "line 2: too many words in this 'option' line: put a value with spaces in quotes, e.g. option venue 'Cafe Nord'",
        ),
        (
            "config wifipos\n\tvalue venue x\n",
            "line 2: 'value' is not a UCI statement: lines start with config, option or list (# starts a comment)",
        ),
        (
            "config wifipos 'main'\nconfig interface 'main'\n",
            "line 2: section 'main' was declared as type 'wifipos' before and now as 'interface': one name, one type",
        ),
        (
            "config 'wi fi'\n",
            "line 1: 'wi fi' is not a valid section type: use letters, digits and _ (no spaces)",
        ),
        (
            "config wifipos\n\toption venue 'a\0b'\n",
            "line 2: the file contains a NUL byte: this is not a text config file",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(syntax(text), want, "{text:?}");
    }
    // Through `check`, the file name comes first.
    assert_eq!(
        errors("config wifipos\n\toption venue 'Cafe\n"),
        ["/etc/config/wifipos:2: a ' quote is opened but never closed (the file ends inside it)"]
    );
}

#[test]
fn every_invalid_value_is_reported_with_its_line_and_what_is_allowed() {
    let text = "config wifipos 'main'
	option guest_iface 'br guest'
	option portal_address '10.20.0.300'
	option portal_port '0'
	option database 'wifipos.db'
	option venue ''
	option language 'fr'
	list trusted_key 'abc'
	list trusted_key 'PrUn7cTd8dxCASYBQpy1LvcujknIfZLWo6oEhInE470='
	list garden '192.0.2.1/24'
	list garden 'example.com'
	list trusted_mac 'aa:bb:cc:dd:ee'
	option max_connections 'lots'
	option attempts_per_minute '-1'
	option keep_days '0'
	option log_level 'verbose'
	list revoked '42'
	list portal_port '2051'
	option venue
";
    assert_eq!(
        errors(text),
        [
            "/etc/config/wifipos:2: option 'guest_iface': 'br guest' is not valid; expected a network device name of up to 15 characters, such as br-guest",
            "/etc/config/wifipos:3: option 'portal_address': '10.20.0.300' is not valid; expected the router's IPv4 or IPv6 address on the guest network, such as 10.20.0.1",
            "/etc/config/wifipos:5: option 'database': 'wifipos.db' is not valid; expected the absolute path of a file, such as /etc/wifipos/wifipos.db",
            "/etc/config/wifipos:7: option 'language': 'fr' is not valid; expected en, de or es",
            "/etc/config/wifipos:8: option 'trusted_key': 'abc' is not valid; expected a public key as `wifipos keygen` prints it: standard base64 of 32 bytes (44 characters ending in =)",
            "/etc/config/wifipos:10: option 'garden': '192.0.2.1/24' is not valid; the prefix has bits set after /24: write 192.0.2.0/24 (or the single address without /24)",
            "/etc/config/wifipos:11: option 'garden': 'example.com' is not valid; expected an IPv4 or IPv6 address or prefix, such as 192.0.2.10, 192.0.2.0/24 or 2001:db8::/32",
            "/etc/config/wifipos:12: option 'trusted_mac': 'aa:bb:cc:dd:ee' is not valid; expected a MAC address such as aa:bb:cc:dd:ee:ff",
            "/etc/config/wifipos:13: option 'max_connections': 'lots' is not valid; expected a whole number from 8 to 65536",
            "/etc/config/wifipos:14: option 'attempts_per_minute': '-1' is not valid; expected a whole number from 1 to 1000",
            "/etc/config/wifipos:15: option 'keep_days': '0' is not valid; expected a whole number from 1 to 3650",
            "/etc/config/wifipos:16: option 'log_level': 'verbose' is not valid; expected error, warn, info or debug",
            "/etc/config/wifipos:17: option 'revoked': '42' is not valid; expected KEYID:SERIAL as `wifipos inspect` prints them, such as 1a2b3c4d:42",
            "/etc/config/wifipos:18: option 'portal_port' takes one value: write it once as option portal_port '…', not as a list",
            "/etc/config/wifipos:19: option 'venue' has no value; write option venue 'VALUE' or delete the line",
        ]
    );
    // `option portal_port '0'` was overridden by the list (UCI keeps the last), and `option
    // venue ''` is no value at all in UCI: neither is reported twice.
}

#[test]
fn a_key_of_the_wrong_length_is_refused() {
    // 31 bytes, valid base64.
    let short =
        "config wifipos\n\tlist trusted_key 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=='\n";
    assert_eq!(errors(short).len(), 1);
    assert!(errors(short)[0].contains("standard base64 of 32 bytes"));
}

#[test]
fn unknown_options_and_sections_warn_and_typos_get_a_hint() {
    let r = config::check(
        FILE,
        "config wifipos 'main'\n\toption venu 'Cafe'\n\toption colour 'red'\nconfig portal\nconfig wifipos 'second'\n",
    );
    assert!(r.errors.is_empty());
    let w: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "/etc/config/wifipos:2: unknown option 'venu' is ignored (did you mean 'venue'?)",
            "/etc/config/wifipos:3: unknown option 'colour' is ignored",
            "/etc/config/wifipos:4: section type 'portal' is unknown and ignored",
            "/etc/config/wifipos:5: a second 'config wifipos' section is ignored; only the one on line 1 counts",
        ]
    );
}

#[test]
fn a_file_without_our_section_is_an_error() {
    let e = config::parse(FILE, "config interface 'lan'\n").unwrap_err();
    assert!(matches!(e, ConfigError::NoSection { .. }));
    assert_eq!(
        e.to_string(),
        "/etc/config/wifipos: there is no 'config wifipos' section; the file should start with: config wifipos 'main'"
    );
}

#[test]
fn ipv6_portal_urls_are_bracketed() {
    let (c, _) =
        config::parse(FILE, "config wifipos\n\toption portal_address 'fd00::1'\n").unwrap();
    assert_eq!(c.portal_url(), "http://[fd00::1]:2050");
    assert_eq!(c.captive_api_url(), None);
}

#[test]
fn https_needs_hostname_certificate_and_key_together() {
    let full = "config wifipos\n\toption portal_hostname 'WiFi.Cafe-Nord.example.'\n\toption tls_cert '/etc/ssl/w.crt'\n\toption tls_key '/etc/ssl/w.key'\n";
    let (c, _) = config::parse(FILE, full).unwrap();
    assert_eq!(c.portal_url(), "https://wifi.cafe-nord.example");
    assert_eq!(
        c.captive_api_url().as_deref(),
        Some("https://wifi.cafe-nord.example/api/captive")
    );
    let (c, _) = config::parse(FILE, &format!("{full}\toption https_port '8443'\n")).unwrap();
    assert_eq!(c.portal_url(), "https://wifi.cafe-nord.example:8443");
    let e = config::parse(
        FILE,
        "config wifipos\n\toption portal_hostname 'wifi.cafe-nord.example'\n\toption tls_cert '/etc/ssl/w.crt'\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/config/wifipos: HTTPS needs option portal_hostname, tls_cert and tls_key together; tls_key is not set"
    );
    for (opt, bad) in [
        ("portal_hostname", "10.20.0.1"),
        ("portal_hostname", "localhost"),
        ("portal_hostname", "bad_name.example"),
        ("tls_cert", "w.crt"),
        ("https_port", "0"),
    ] {
        let text = format!("config wifipos\n\toption {opt} '{bad}'\n");
        let r = config::check(FILE, &text);
        assert!(
            r.errors
                .iter()
                .any(|e| e.to_string().contains(&format!("option '{opt}'"))),
            "{opt}={bad}: {:?}",
            r.errors
        );
    }
}

fn wifiposd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wifiposd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_exits_0_when_valid_1_when_invalid_2_when_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok");
    std::fs::write(&ok, "config wifipos\n\toption venu 'x'\n").unwrap();
    let (code, out, err) = wifiposd(&["check-config", "--config", ok.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK (portal http://10.20.0.1:2050"), "{out}");
    assert!(
        err.contains(":2: unknown option 'venu' is ignored"),
        "{err}"
    );

    let bad = dir.path().join("bad");
    std::fs::write(
        &bad,
        "config wifipos\n\toption portal_port 'x'\n\toption language 'fr'\n",
    )
    .unwrap();
    let (code, out, err) = wifiposd(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(":2: option 'portal_port': 'x' is not valid"),
        "{err}"
    );
    assert!(
        err.contains(":3: option 'language': 'fr' is not valid"),
        "{err}"
    );
    assert!(out.contains("2 error(s)"), "{out}");

    let (code, _, err) = wifiposd(&["check-config", "--config", "/nonexistent/wifipos"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read /nonexistent/wifipos"), "{err}");

    let (code, out, _) = wifiposd(&["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("wifiposd "), "{out}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = config::check(FILE, &text);
        let _ = config::check(FILE, &format!("config wifipos\n{text}"));
    }

    #[test]
    fn uci_looking_noise_never_panics_either(
        parts in prop::collection::vec(prop::sample::select(vec![
            "config", "option", "list", " ", "\t", "\n", "\r", "'", "\"", "\\", "#", ";",
            "wifipos", "venue", "garden", "portal_port", "1", "::", "/", "é",
        ]), 0..60)
    ) {
        let _ = config::check(FILE, &parts.concat());
    }
}

#[test]
fn the_printed_ruleset_is_what_nft_itself_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wifipos");
    std::fs::write(
        &cfg,
        "config wifipos\n\toption guest_iface 'br-lan2'\n\tlist garden '192.0.2.0/24'\n\tlist trusted_mac '02:00:00:00:00:01'\n",
    )
    .unwrap();
    let (code, script, err) = wifiposd(&["ruleset", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(script.contains("iifname != \"br-lan2\" return") && script.contains("192.0.2.0/24"));
    // `nft -c` checks the script against the kernel without changing anything.
    let check = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        });
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out)
            if std::env::var("CI").as_deref() != Ok("true")
                && out.status.code() == Some(1)
                && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted") =>
        {
            eprintln!("SKIPPED nft -c: needs root")
        }
        Ok(out) => panic!(
            "nft refused the ruleset: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "nft is required in CI: {e}"
            );
            eprintln!("SKIPPED nft -c: {e}");
        }
    }
    let (code, _, err) = wifiposd(&["ruleset", "--config", "/nonexistent/wifipos"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/wifipos"), "{err}");
}

#[test]
fn radius_accounting_options_read_with_their_defaults_and_limits() {
    let c = Config::default();
    assert_eq!(
        (c.radius_server, c.radius(), c.radius_interim_s),
        (None, None, 300)
    );
    assert_eq!(
        c.nas_id(),
        c.venue,
        "the NAS-Identifier defaults to the venue"
    );
    let r = config::check(
        FILE,
        "config wifipos 'main'\n\toption radius_server '192.0.2.5'\n\toption radius_secret 's3cret'\n\toption radius_interim '60'\n\toption radius_nas_id 'cafe-nord'\n",
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let c = r.config;
    assert_eq!(c.radius_server, Some("192.0.2.5:1813".parse().unwrap()));
    assert_eq!(
        c.radius(),
        Some(("192.0.2.5:1813".parse().unwrap(), &b"s3cret"[..]))
    );
    assert_eq!((c.radius_interim_s, c.nas_id()), (60, "cafe-nord"));
    let v6 = config::check(
        FILE,
        "config wifipos 'main'\n\toption radius_server '[2001:db8::5]:11813'\n\toption radius_secret 's'\n",
    );
    assert_eq!(
        v6.config.radius_server,
        Some("[2001:db8::5]:11813".parse().unwrap())
    );
    // Empty = off, even without a secret.
    assert!(errors("config wifipos 'main'\n\toption radius_server ''\n").is_empty());
    // (An empty value is no value in UCI: the option keeps its default.)
    let bad = errors(&format!(
        "config wifipos 'main'\n\toption radius_server 'radius.example'\n\toption radius_interim '59'\n\toption radius_nas_id '{}'\n",
        "n".repeat(65)
    ));
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        bad[0].contains("radius_server") && bad[0].contains("IP address"),
        "{bad:?}"
    );
    assert!(bad[1].contains("from 60 to 86400"), "{bad:?}");
    assert!(bad[2].contains("radius_nas_id"), "{bad:?}");
    let no_secret = errors("config wifipos 'main'\n\toption radius_server '192.0.2.5:1813'\n");
    assert_eq!(no_secret.len(), 1);
    assert!(no_secret[0].contains("radius_secret"), "{no_secret:?}");
}

#[test]
fn a_secret_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wifipos");
    std::fs::write(
        &path,
        "config wifipos 'main'\n\toption radius_server '192.0.2.5'\n\toption radius_secret 's3cret'\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = config::load(&path).unwrap().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].message.contains("mode is 644") && w[0].message.contains("chmod 600"),
        "{w:?}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(config::load(&path).unwrap().warnings.is_empty());
    // Without a secret the mode does not matter.
    std::fs::write(&path, "config wifipos 'main'\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn central_authorization_and_coa_options_read_with_their_defaults_and_limits() {
    let c = Config::default();
    assert_eq!(
        (c.radius_auth(), c.radius_timeout_ms, c.radius_coa()),
        (None, 1000, None)
    );
    let r = config::check(
        FILE,
        "config wifipos 'main'\n\toption radius_server '192.0.2.5'\n\toption radius_auth_server '192.0.2.6'\n\toption radius_secret 's3cret'\n\toption radius_timeout_ms '250'\n\toption radius_coa_port '3799'\n",
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let c = r.config;
    assert_eq!(
        c.radius_auth(),
        Some(("192.0.2.6:1812".parse().unwrap(), &b"s3cret"[..]))
    );
    assert_eq!(c.radius_timeout_ms, 250);
    assert_eq!(
        c.radius_coa(),
        Some((
            3799,
            vec!["192.0.2.5".parse().unwrap(), "192.0.2.6".parse().unwrap()],
            &b"s3cret"[..]
        ))
    );
    // Port 0 = not listening.
    let off = config::check(
        FILE,
        "config wifipos 'main'\n\toption radius_coa_port '0'\n\toption radius_secret 's'\n",
    );
    assert!(off.errors.is_empty() && off.config.radius_coa().is_none());
    let bad = errors(
        "config wifipos 'main'\n\toption radius_auth_server 'hq'\n\toption radius_timeout_ms '50'\n\toption radius_coa_port '70000'\n\toption radius_secret 's'\n",
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].contains("authentication port"), "{bad:?}");
    assert!(bad[1].contains("from 100 to 10000"), "{bad:?}");
    assert!(bad[2].contains("from 0 to 65535"), "{bad:?}");
    for option in ["radius_auth_server '192.0.2.6'", "radius_coa_port '3799'"] {
        let no_secret = errors(&format!("config wifipos 'main'\n\toption {option}\n"));
        assert_eq!(no_secret.len(), 1, "{no_secret:?}");
        assert!(
            no_secret[0].contains("radius_secret") && no_secret[0].contains(&option[..12]),
            "{no_secret:?}"
        );
    }
}
