//! The OpenWrt package as opkg sees it: the .ipk's layout, control fields, conffiles, owners
//! and modes; the procd init script run against stubbed procd functions; shellcheck on every
//! shell script we ship or run. (tests/opkg.rs and tests/apk.rs install the packages with
//! OpenWrt's own package managers.)

mod pkgkit;

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
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = pkgkit::router_bin(scratch.path());
    let out = Command::new(format!("{ROOT}/scripts/build-ipk"))
        .arg(&bin)
        .args(["x86_64"])
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
        .ends_with("_x86_64.ipk"));

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
        ("./etc/config/wifipos", "-rw-------"),
        ("./lib/upgrade/keep.d/wifipos", "-rw-r--r--"),
        ("./usr/sbin/", "drwxr-xr-x"),
        ("./etc/config/", "drwxr-xr-x"),
    ] {
        let line = data
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{data}"));
        assert!(line.starts_with(mode), "{line}");
        assert!(line.contains(" 0/0 "), "owned by root: {line}");
    }

    let ctl = listing(&ipk, Some("./control.tar.gz"), x.path());
    for f in [
        "./control",
        "./conffiles",
        "./postinst",
        "./prerm",
        "./prerm-pkg",
    ] {
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
        "Architecture: x86_64",
        "Section: net",
    ] {
        assert!(control.contains(field), "{field}:\n{control}");
    }
    // A static binary links no shared library: libc (every OpenWrt package has it) and the
    // kernel modules only.
    assert!(
        control.contains("Depends: libc, kmod-nft-core, kmod-nft-nat, kmod-nf-conntrack-netlink, kmod-sched-core, kmod-ifb\n"),
        "{control}"
    );
    let size: u64 = control
        .lines()
        .find_map(|l| l.strip_prefix("Installed-Size: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > std::fs::metadata(&bin).unwrap().len());
    assert!(
        control.contains("Description: A captive portal that verifies"),
        "{control}"
    );
    assert_eq!(
        std::fs::read_to_string(cdir.join("conffiles")).unwrap(),
        "/etc/config/wifipos\n"
    );
    // The maintainer scripts OpenWrt's package-ipkg.mk writes: run uci-defaults, enable and
    // start the service on install; stop and disable it on removal.
    let postinst = std::fs::read_to_string(cdir.join("postinst")).unwrap();
    assert!(postinst.contains("default_postinst $0 $@"), "{postinst}");
    let prerm = std::fs::read_to_string(cdir.join("prerm")).unwrap();
    assert!(prerm.contains("default_prerm $0 $@"), "{prerm}");
    // Package/wifipos/prerm, which default_prerm sources: the firewall rule goes on removal.
    let hook = std::fs::read_to_string(cdir.join("prerm-pkg")).unwrap();
    assert!(
        hook.contains("/usr/libexec/wifipos-firewall\" remove") && hook.contains("PKG_UPGRADE"),
        "{hook}"
    );
    for (f, mode) in [("./postinst", "-rwxr-xr-x"), ("./control", "-rw-r--r--")] {
        let line = ctl.lines().find(|l| l.ends_with(f)).unwrap();
        assert!(line.starts_with(mode) && line.contains(" 0/0 "), "{line}");
    }

    // Reproducible: the same binary gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    let out2 = Command::new(format!("{ROOT}/scripts/build-ipk"))
        .arg(&bin)
        .arg("x86_64")
        .arg(again.path())
        .output()
        .unwrap();
    let ipk2 = String::from_utf8(out2.stdout).unwrap();
    let (a, b) = (
        std::fs::read(&ipk).unwrap(),
        std::fs::read(ipk2.trim()).unwrap(),
    );
    assert!(
        a == b,
        "two builds differ ({} and {} bytes)",
        a.len(),
        b.len()
    );
}

/// A fake `uci` for the uci-defaults script: `-q get`, `add_list` and `commit` on a state file
/// of `key=value` lines (lists space-separated, as `uci get` prints them).
const FAKE_UCI: &str = r#"#!/bin/sh
state=$FAKE_UCI_STATE
[ "$1" = -q ] && shift
case "$1" in
get) awk -v k="$2=" 'index($0, k) == 1 { print substr($0, length(k) + 1); exit }' "$state" | grep . || exit 1 ;;
add_list)
	key=${2%%=*}; val=${2#*=}
	old=$(awk -v k="$key=" 'index($0, k) == 1 { print substr($0, length(k) + 1) }' "$state")
	awk -v k="$key=" 'index($0, k) != 1' "$state" > "$state.new"
	echo "$key=${old:+$old }$val" >> "$state.new"
	mv "$state.new" "$state"
	echo "add_list $2" >> "$state.log" ;;
commit) echo "commit $2" >> "$state.log" ;;
*) echo "fake uci: $*" >&2; exit 2 ;;
esac
"#;

#[test]
fn uci_defaults_adds_https_option_114_and_the_name_once_and_only_to_an_existing_guest_network() {
    if !required("sh") {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("uci"), FAKE_UCI).unwrap();
    std::fs::set_permissions(bin.join("uci"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("wifipos");
    let plain = "config wifipos 'main'\n\toption portal_address '10.20.0.1'\n";
    let https = format!(
        "{plain}\toption portal_hostname 'wifi.cafe.example'\n\toption tls_cert '/etc/ssl/w.crt'\n\toption tls_key '/etc/ssl/w.key'\n"
    );
    std::fs::write(&conf, &https).unwrap();
    // The real binary answers `captive-url` from the config given by the wrapper.
    let wrapper = bin.join("wifiposd");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} \"$@\" --config {}\n",
            env!("CARGO_BIN_EXE_wifiposd"),
            conf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let run = || {
        let out = Command::new("sh")
            .arg(format!("{ROOT}/files/etc/uci-defaults/90-wifipos"))
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("WIFIPOSD", &wrapper)
            .env("FAKE_UCI_STATE", &state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(&state).unwrap()
    };

    // HTTPS on: option 114 with the https API, and dnsmasq answers the name.
    let guest = "dhcp.guest=dhcp\ndhcp.guest.dhcp_option=6,10.20.0.1\nwifipos.main.portal_address=10.20.0.1\n";
    std::fs::write(&state, guest).unwrap();
    let first = run();
    assert!(
        first.contains(
            "dhcp.guest.dhcp_option=6,10.20.0.1 114,https://wifi.cafe.example/api/captive\n"
        ),
        "{first}"
    );
    assert!(
        first.contains("dhcp.@dnsmasq[0].address=/wifi.cafe.example/10.20.0.1\n"),
        "{first}"
    );
    assert_eq!(run(), first, "a second run changes nothing");
    let log = std::fs::read_to_string(dir.path().join("state.log")).unwrap();
    assert_eq!(log.matches("commit dhcp").count(), 1, "{log}");

    // Without HTTPS: no http API URL is advertised, no name added.
    std::fs::write(&conf, plain).unwrap();
    std::fs::write(&state, guest).unwrap();
    assert_eq!(run(), guest);
    std::fs::write(&conf, &https).unwrap();
    // No guest DHCP section: nothing is created.
    std::fs::write(&state, "dhcp.lan=dhcp\n").unwrap();
    assert_eq!(run(), "dhcp.lan=dhcp\n");
    // An invalid config: the script still exits 0 and changes nothing.
    std::fs::write(&conf, "config wifipos\n\toption portal_port 'x'\n").unwrap();
    std::fs::write(&state, "dhcp.guest=dhcp\n").unwrap();
    assert_eq!(run(), "dhcp.guest=dhcp\n");
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
        "scripts/build-apk",
        "scripts/build-openwrt-tools",
        "scripts/lib/pkg.sh",
        "scripts/build-router",
        "scripts/build-musl",
        "scripts/build-c-deps",
        ".ci/run",
        "files/etc/uci-defaults/90-wifipos",
    ];
    for s in scripts {
        let out = Command::new("shellcheck")
            .arg("-x")
            .arg(s)
            .current_dir(ROOT)
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
