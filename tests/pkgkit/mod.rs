//! What the opkg, apk and LuCI package tests share: the router binary to package, OpenWrt's
//! package managers built from ../shared/upstream, offline roots for opkg and apk with their
//! dependencies stubbed, the roots' stand-ins for OpenWrt's /lib/functions.sh and the firewall
//! helper, running the package managers there, and a listing of installed files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The static musl wifiposd to package: `WIFIPOS_ROUTER_BIN` (scripts/test sets it to
/// scripts/build-musl's output), else that output if it is there. Outside CI, a stand-in
/// static program compiled here (musl-gcc or gcc -static), said so on stderr; under CI=true
/// a missing binary fails the test. The flag says whether it is the real daemon.
pub fn router_bin(scratch: &Path) -> (PathBuf, bool) {
    if let Some(p) = std::env::var_os("WIFIPOS_ROUTER_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "WIFIPOS_ROUTER_BIN={} is not a file",
            p.display()
        );
        return (p, true);
    }
    let built = Path::new(ROOT).join("target/x86_64-unknown-linux-musl/release/wifiposd");
    if built.is_file() {
        return (built, true);
    }
    assert!(
        !ci(),
        "no router binary: set WIFIPOS_ROUTER_BIN or run scripts/build-musl first"
    );
    let src = scratch.join("standin.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"stand-in wifiposd\");return 0;}\n",
    )
    .unwrap();
    let out = scratch.join("wifiposd-standin");
    for cc in [&["musl-gcc", "-static"][..], &["gcc", "-static"][..]] {
        let ok = Command::new(cc[0])
            .args(&cc[1..])
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            eprintln!(
                "NOTE: no router binary (WIFIPOS_ROUTER_BIN unset, scripts/build-musl not run): \
                 packaging a static stand-in built with {}",
                cc[0]
            );
            return (out, false);
        }
    }
    panic!("no router binary and no static C compiler for a stand-in");
}

/// Builds OpenWrt's `tool` (opkg or apk) with scripts/build-openwrt-tools (cached) and returns
/// its path; None (test skipped, said so) only outside CI when it cannot be built.
pub fn openwrt_tool(tool: &str) -> Option<PathBuf> {
    let out = Command::new(format!("{ROOT}/scripts/build-openwrt-tools"))
        .arg(tool)
        .output()
        .unwrap();
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(!ci(), "building OpenWrt's {tool} failed:\n{why}");
        eprintln!("SKIPPED: cannot build OpenWrt's {tool}:\n{why}");
        return None;
    }
    let bin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join(tool);
    assert!(bin.is_file(), "{} missing", bin.display());
    Some(bin)
}

/// scripts/build-ipk or build-apk (`script`) for `bin` labelled `arch`, writing into `out`;
/// not run yet.
pub fn build_script(script: &str, bin: &Path, arch: &str, out: &Path) -> Command {
    let mut c = Command::new(format!("{ROOT}/scripts/{script}"));
    c.arg(bin).arg(arch).arg(out);
    c
}

/// Runs scripts/build-ipk or build-apk with a package release; the package's path.
pub fn build_package(script: &str, bin: &Path, arch: &str, out: &Path, release: u32) -> PathBuf {
    let o = build_script(script, bin, arch, out)
        .env("WIFIPOS_PKG_RELEASE", release.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{script}: {}", text(&o));
    let p = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
    assert!(p.is_file(), "{script} printed {}", p.display());
    p
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A stand-in for OpenWrt's /lib/functions.sh in the offline root ($IPKG_INSTROOT): each of
/// the functions the maintainer scripts call appends a line to $IPKG_INSTROOT/scripts.log
/// (with the script's arguments and PKG_UPGRADE); default_postinst and default_prerm source the
/// package's postinst-pkg / prerm-pkg from opkg's info directory the way OpenWrt's do (apk
/// appends them to post-install / pre-deinstall instead), a sourced postinst-pkg logged.
pub const FUNCTIONS_SH: &str = r#"# stand-in for OpenWrt's /lib/functions.sh (tests/pkgkit)
log() { echo "$*" >> "${IPKG_INSTROOT}/scripts.log"; }
add_group_and_user() { log "add_group_and_user pkgname=${pkgname}"; }
default_postinst() {
	log default_postinst "$@" "PKG_UPGRADE=${PKG_UPGRADE}" "pkgname=${pkgname}"
	[ -n "$1" ] || return 0
	name=$(basename "${1%.*}")
	if [ -f "${IPKG_INSTROOT}/usr/lib/opkg/info/${name}.postinst-pkg" ]; then
		( . "${IPKG_INSTROOT}/usr/lib/opkg/info/${name}.postinst-pkg" ) && log "postinst-pkg ${name}"
	fi
}
default_prerm() {
	log default_prerm "$@" "PKG_UPGRADE=${PKG_UPGRADE}" "pkgname=${pkgname}"
	[ -n "$1" ] || return 0
	name=$(basename "${1%.*}")
	if [ -f "${IPKG_INSTROOT}/usr/lib/opkg/info/${name}.prerm-pkg" ]; then
		( . "${IPKG_INSTROOT}/usr/lib/opkg/info/${name}.prerm-pkg" )
	fi
}
"#;

/// Puts the functions.sh stand-in into `root`.
pub fn functions_sh(root: &Path) {
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::write(root.join("lib/functions.sh"), FUNCTIONS_SH).unwrap();
}

/// Replaces `root`/usr/libexec/wifipos-firewall (shipped by the package or not) with a
/// recorder, so removal's call to it shows in scripts.log without touching this machine's
/// firewall.
pub fn firewall_recorder(root: &Path) {
    let p = root.join("usr/libexec/wifipos-firewall");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&p);
    std::fs::write(
        &p,
        "#!/bin/sh\necho \"wifipos-firewall $*\" >> \"${IPKG_INSTROOT}/scripts.log\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The scripts.log lines, and empties it.
pub fn take_log(root: &Path) -> Vec<String> {
    let p = root.join("scripts.log");
    let s = std::fs::read_to_string(&p).unwrap_or_default();
    let _ = std::fs::remove_file(&p);
    s.lines().map(str::to_owned).collect()
}

/// Every regular file under `dir` (relative path -> mode bits), leaving out `skip` prefixes.
pub fn files(dir: &Path, skip: &[&str]) -> BTreeMap<String, u32> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, u32>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                walk(base, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, m.permissions().mode() & 0o7777);
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut out);
    }
    out.retain(|k, _| !skip.iter().any(|s| k.starts_with(s)));
    out
}

/// What the package must install: /usr/sbin/wifiposd and every file under files/, with
/// OpenWrt's modes (UCI config 0600, programs 0755, the rest 0644), each with the bytes of its
/// source.
pub fn expected_files(bin: &Path) -> BTreeMap<String, (u32, PathBuf)> {
    let mut want = BTreeMap::new();
    want.insert("usr/sbin/wifiposd".to_owned(), (0o755, bin.to_owned()));
    let src = Path::new(ROOT).join("files");
    for (rel, mode) in files(&src, &[]) {
        let m = if rel.starts_with("etc/config/") {
            0o600
        } else if [
            "etc/init.d/",
            "etc/uci-defaults/",
            "usr/libexec/",
            "usr/sbin/",
        ]
        .iter()
        .any(|p| rel.starts_with(p))
            || mode & 0o100 != 0
        {
            0o755
        } else {
            0o644
        };
        want.insert(rel.clone(), (m, src.join(&rel)));
    }
    // The files every version of the package has had, so a broken glob cannot pass.
    for must in [
        "usr/sbin/wifiposd",
        "etc/config/wifipos",
        "etc/init.d/wifipos",
        "etc/uci-defaults/90-wifipos",
        "lib/upgrade/keep.d/wifipos",
    ] {
        assert!(want.contains_key(must), "{must}");
    }
    want
}

/// Asserts `root` holds exactly the expected files with their modes and bytes.
pub fn assert_installed(root: &Path, bin: &Path, skip: &[&str]) {
    let want = expected_files(bin);
    let got = files(root, skip);
    let names: Vec<_> = got.keys().collect();
    assert_eq!(
        names,
        want.keys().collect::<Vec<_>>(),
        "installed files differ"
    );
    for (rel, (mode, src)) in &want {
        assert_eq!(got[rel], *mode, "mode of /{rel}: {:o}", got[rel]);
        assert!(
            std::fs::read(root.join(rel)).unwrap() == std::fs::read(src).unwrap(),
            "/{rel} differs from {}",
            src.display()
        );
    }
}

pub fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()[..64].to_owned()
}

/// Appends an admin's edit to the installed config.
pub fn edit_config(root: &Path) -> Vec<u8> {
    let p = root.join("etc/config/wifipos");
    let mut c = std::fs::read(&p).unwrap();
    c.extend_from_slice(b"\n# edited by the cafe owner\n\toption venue 'Cafe Nord'\n");
    std::fs::write(&p, &c).unwrap();
    c
}

/// Runs the installed /usr/sbin/wifiposd of `root` with `version`, asserted to succeed; its
/// stdout.
pub fn installed_version(root: &Path) -> String {
    let v = Command::new(root.join("usr/sbin/wifiposd"))
        .arg("version")
        .output()
        .unwrap();
    assert!(v.status.success(), "the installed wifiposd: {}", text(&v));
    String::from_utf8_lossy(&v.stdout).into_owned()
}

/// The package's files in `root` (all but `not_ours`, and the package manager's copy of the
/// new config, `new_config`, beside an edited one) compared with expected_files: names, modes,
/// and bytes but for `edited` and the firewall recorder (which stands in for the helper, and
/// is left out of the names when the package does not ship one).
pub fn check_package_files(
    root: &Path,
    bin: &Path,
    not_ours: &[&str],
    new_config: &str,
    edited: &[&str],
) {
    let want = expected_files(bin);
    let mut got = files(root, not_ours);
    if !want.contains_key("usr/libexec/wifipos-firewall") {
        got.remove("usr/libexec/wifipos-firewall");
    }
    got.remove(new_config);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (rel, (mode, src)) in &want {
        assert_eq!(got[rel], *mode, "mode of /{rel}: {:o}", got[rel]);
        if edited.contains(&rel.as_str()) || rel == "usr/libexec/wifipos-firewall" {
            continue;
        }
        assert!(
            std::fs::read(root.join(rel)).unwrap() == std::fs::read(src).unwrap(),
            "/{rel} differs from {}",
            src.display()
        );
    }
}

/// The files a removal left in `root` besides `not_ours`; the firewall recorder left out
/// when it stands for a helper the package does not ship (the package manager leaves it).
pub fn left_after_removal(root: &Path, bin: &Path, not_ours: &[&str]) -> Vec<String> {
    let mut left: Vec<String> = files(root, not_ours).into_keys().collect();
    if !expected_files(bin).contains_key("usr/libexec/wifipos-firewall") {
        left.retain(|f| f != "usr/libexec/wifipos-firewall");
    }
    left
}

/// wifipos's Depends, in its control file's order.
pub const WIFIPOS_DEPENDS: [&str; 6] = [
    "libc",
    "kmod-nft-core",
    "kmod-nft-nat",
    "kmod-nf-conntrack-netlink",
    "kmod-sched-core",
    "kmod-ifb",
];

// ---------------------------------------------------------------- opkg

/// Files of an offline opkg root that are not a package's.
pub const OPKG_NOT_OURS: [&str; 5] = [
    "etc/opkg.conf",
    "usr/lib/opkg/",
    "lib/functions.sh",
    "var/",
    "scripts.log",
];

/// An offline OpenWrt root for x86_64 in `dir` whose opkg status lists `installed` as
/// installed (each with an empty file list), with the functions.sh stand-in.
pub fn opkg_root(dir: &Path, installed: &[&str]) {
    std::fs::create_dir_all(dir.join("usr/lib/opkg/info")).unwrap();
    std::fs::create_dir_all(dir.join("var/lock")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/opkg.conf"),
        "dest root /\nlists_dir ext /var/opkg-lists\narch all 1\narch noarch 1\narch x86_64 10\n",
    )
    .unwrap();
    let mut status = String::new();
    for p in installed {
        status += &format!(
            "Package: {p}\nVersion: 1\nStatus: install ok installed\nArchitecture: x86_64\n\
             Installed-Time: 1\n\n"
        );
        std::fs::write(dir.join(format!("usr/lib/opkg/info/{p}.list")), "").unwrap();
    }
    std::fs::write(dir.join("usr/lib/opkg/status"), status).unwrap();
    functions_sh(dir);
}

/// Runs `opkg` on the offline `root` (`-o`, its opkg.conf, `--force-postinstall`,
/// IPKG_INSTROOT=root) with `args`, whatever the outcome.
pub fn opkg_raw(opkg: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(opkg)
        .arg("-o")
        .arg(root)
        .arg("-f")
        .arg(root.join("etc/opkg.conf"))
        .arg("--force-postinstall")
        .args(args)
        .env("IPKG_INSTROOT", root)
        .output()
        .unwrap()
}

/// opkg_raw, asserted to succeed; its exit status and output as text.
pub fn opkg(opkg: &Path, root: &Path, args: &[&str]) -> String {
    let out = opkg_raw(opkg, root, args);
    let t = text(&out);
    assert!(out.status.success(), "opkg {args:?}: {t}");
    t
}

/// The stanza of `pkg` in the offline root's opkg status file, if any.
pub fn opkg_stanza(root: &Path, pkg: &str) -> Option<String> {
    let status = std::fs::read_to_string(root.join("usr/lib/opkg/status")).unwrap();
    status
        .split("\n\n")
        .find(|s| s.lines().next() == Some(&format!("Package: {pkg}")))
        .map(str::to_owned)
}

// ---------------------------------------------------------------- apk

/// Files of an offline apk root that are not a package's.
pub const APK_NOT_OURS: [&str; 6] = [
    "scripts.log",
    "etc/apk/",
    "lib/apk/db/",
    "var/",
    "lib/functions.sh",
    "lib/apk/packages/",
];

/// Runs `apk` on the offline `root` (`--root`, untrusted packages, no network, no cache, the
/// scripts run here with IPKG_INSTROOT=root) with `args`, whatever the outcome.
pub fn apk_raw(apk: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(apk)
        .arg("--root")
        .arg(root)
        .args([
            "--allow-untrusted",
            "--no-network",
            "--no-cache",
            "--force-no-chroot",
            "--preserve-env",
        ])
        .args(args)
        .env("IPKG_INSTROOT", root)
        .output()
        .unwrap()
}

/// apk_raw, asserted to succeed; its exit status and output as text.
pub fn apk(apk: &Path, root: &Path, args: &[&str]) -> String {
    let out = apk_raw(apk, root, args);
    let t = text(&out);
    assert!(out.status.success(), "apk {args:?}: {t}");
    t
}

/// A fresh x86_64 apk root in `root` with `installed` added as empty stand-in packages
/// (made with `apk mkpkg` in `scratch`), and the functions.sh stand-in.
pub fn apk_root(apk_bin: &Path, root: &Path, scratch: &Path, installed: &[&str]) {
    let empty = scratch.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut stubs = vec![];
    for p in installed {
        let out = scratch.join(format!("{p}-1-r0.apk"));
        let o = Command::new(apk_bin)
            .args(["mkpkg", "--info"])
            .arg(format!("name:{p}"))
            .args(["--info", "version:1-r0", "--info", "arch:x86_64"])
            .args(["--info", "description:stand-in", "--files"])
            .arg(&empty)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        stubs.push(out.display().to_string());
    }
    let mut args = vec!["--initdb", "--arch", "x86_64", "add"];
    args.extend(stubs.iter().map(String::as_str));
    apk(apk_bin, root, &args);
    functions_sh(root);
}
