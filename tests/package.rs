//! The OpenWrt package as opkg sees it: the .ipk's layout, control fields, conffiles, owners
//! and modes; the procd init script run against stubbed procd functions; shellcheck on every
//! shell script we ship or run.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn required(tool: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{tool} is required in CI"
    );
    eprintln!("SKIPPED: {tool} is not installed");
    false
}

/// `tar -tzvf` of an archive member of the ipk (or of the ipk itself with `member` None).
fn listing(ipk: &Path, member: Option<&str>, dir: &Path) -> String {
    let target = match member {
        Some(m) => {
            let st = Command::new("tar")
                .arg("-xzf")
                .arg(ipk)
                .arg("-C")
                .arg(dir)
                .arg(m)
                .status()
                .unwrap();
            assert!(st.success());
            dir.join(m)
        }
        None => ipk.to_owned(),
    };
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tzvf"])
        .arg(target)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_ipk_has_opkgs_layout_fields_conffiles_and_modes() {
    if !required("tar") {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(format!("{ROOT}/scripts/build-ipk"))
        .args([env!("CARGO_BIN_EXE_wifiposd"), "mipsel_24kc"])
        .arg(out_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ipk = Path::new(String::from_utf8(out.stdout).unwrap().trim()).to_owned();
    assert!(ipk
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("_mipsel_24kc.ipk"));

    let outer = listing(&ipk, None, out_dir.path());
    let names: Vec<&str> = outer
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        names,
        ["./debian-binary", "./control.tar.gz", "./data.tar.gz"]
    );

    let x = tempfile::tempdir().unwrap();
    let data = listing(&ipk, Some("./data.tar.gz"), x.path());
    for (path, mode) in [
        ("./usr/sbin/wifiposd", "-rwxr-xr-x"),
        ("./etc/init.d/wifipos", "-rwxr-xr-x"),
        ("./etc/uci-defaults/90-wifipos", "-rwxr-xr-x"),
        ("./etc/config/wifipos", "-rw-r--r--"),
    ] {
        let line = data
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{data}"));
        assert!(line.starts_with(mode), "{line}");
        assert!(line.contains(" 0/0 "), "owned by root: {line}");
    }

    let ctl = listing(&ipk, Some("./control.tar.gz"), x.path());
    for f in ["./control", "./conffiles", "./postinst", "./prerm"] {
        assert!(ctl.lines().any(|l| l.ends_with(f)), "{f} missing:\n{ctl}");
    }
    let cdir = x.path().join("c");
    std::fs::create_dir(&cdir).unwrap();
    assert!(Command::new("tar")
        .arg("-xzf")
        .arg(x.path().join("control.tar.gz"))
        .arg("-C")
        .arg(&cdir)
        .status()
        .unwrap()
        .success());
    let control = std::fs::read_to_string(cdir.join("control")).unwrap();
    for field in [
        "Package: wifipos",
        "Version: 0.1.0-1",
        "Architecture: mipsel_24kc",
        "Section: net",
    ] {
        assert!(control.contains(field), "{field}:\n{control}");
    }
    assert!(control.contains("Depends: libc, libnftnl11, libmnl0, libsqlite3-0, nftables"));
    let size: u64 = control
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        size > std::fs::metadata(env!("CARGO_BIN_EXE_wifiposd"))
            .unwrap()
            .len()
    );
    assert!(control.contains("Description: Sell Wi-Fi"));
    assert_eq!(
        std::fs::read_to_string(cdir.join("conffiles")).unwrap(),
        "/etc/config/wifipos\n"
    );
}

#[test]
fn the_init_script_starts_wifiposd_under_procd_and_reloads_with_sighup() {
    if !required("sh") && !Path::new("/bin/sh").exists() {
        return;
    }
    let harness = format!(
        r#"
procd_open_instance() {{ echo "open"; }}
procd_set_param() {{ echo "param $*"; }}
procd_close_instance() {{ echo "close"; }}
procd_add_reload_trigger() {{ echo "trigger $*"; }}
procd_send_signal() {{ echo "signal $*"; }}
. {ROOT}/files/etc/init.d/wifipos
echo "START=$START STOP=$STOP USE_PROCD=$USE_PROCD"
start_service
service_triggers
reload_service
"#
    );
    let out = Command::new("sh").args(["-c", &harness]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            "START=95 STOP=10 USE_PROCD=1",
            "open",
            "param command /usr/sbin/wifiposd serve --config /etc/config/wifipos",
            "param respawn 3600 5 5",
            "param stdout 1",
            "param stderr 1",
            "close",
            "trigger wifipos",
            "signal wifipos * HUP",
        ]
    );
}

#[test]
fn every_shell_script_is_shellcheck_clean() {
    if !required("shellcheck") {
        return;
    }
    let scripts = [
        "scripts/setup",
        "scripts/test",
        "scripts/demo",
        "scripts/lab",
        "scripts/bench-portal",
        "scripts/bench",
        "scripts/build-ipk",
        "scripts/build-router",
        ".ci/run",
        "files/etc/uci-defaults/90-wifipos",
    ];
    for s in scripts {
        let out = Command::new("shellcheck")
            .arg(format!("{ROOT}/{s}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{s}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(format!("{ROOT}/files/etc/init.d/wifipos"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init script:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
