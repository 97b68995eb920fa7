//! luci-app-wifipos and its translations (luci-i18n-wifipos-<lang>) as scripts/build-luci makes
//! them, the way LuCI's luci.mk and OpenWrt's package-pack.mk do, installed, upgraded and
//! removed by OpenWrt's real opkg and apk-tools v3 (built from ../shared/upstream) in offline
//! roots whose other dependencies (libc, luci-base, ucode and its modules, the kernel modules)
//! are stubs. Checked: the package cannot go in without wifipos; every file of htdocs/ under
//! /www and of root/ under / with its bytes and mode (the rpcd plugin 0755); the translations
//! compiled by LuCI's po2lmo into /usr/lib/lua/luci/i18n/wifipos.<lang>.lmo; Depends and
//! Architecture all/noarch as recorded by the package manager; luci.mk's postinst (on a router,
//! rpcd gets SIGHUP); reproducible bytes; an upgrade; wifipos kept while LuCI needs it; removal
//! leaving wifipos alone.

mod pkgkit;

use pkgkit::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every dependency but wifipos: luci-app-wifipos's, then wifipos's own.
const STUBS: [&str; 10] = [
    "libc",
    "luci-base",
    "ucode",
    "ucode-mod-fs",
    "ucode-mod-struct",
    "kmod-nft-core",
    "kmod-nft-nat",
    "kmod-nf-conntrack-netlink",
    "kmod-sched-core",
    "kmod-ifb",
];
const LUCI_DEPENDS: &str = "libc, luci-base, wifipos, ucode, ucode-mod-fs, ucode-mod-struct";

fn app() -> PathBuf {
    Path::new(ROOT).join("openwrt/luci-app-wifipos")
}

/// The translations: po/<lang>/ but templates.
fn languages() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(app().join("po"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|l| l != "templates")
        .collect();
    v.sort();
    assert!(
        v.contains(&"de".to_owned()) && v.contains(&"es".to_owned()),
        "{v:?}"
    );
    v
}

/// scripts/build-luci FORMAT OUT with a release: the packages' paths, the app first.
fn build_luci(format: &str, out: &Path, release: u32) -> Vec<PathBuf> {
    let o = Command::new(format!("{ROOT}/scripts/build-luci"))
        .arg(format)
        .arg(out)
        .env("WIFIPOS_PKG_RELEASE", release.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "build-luci: {}", text(&o));
    let pkgs: Vec<PathBuf> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    assert_eq!(pkgs.len(), 1 + languages().len(), "{pkgs:?}");
    for p in &pkgs {
        assert!(p.is_file(), "{}", p.display());
    }
    pkgs
}

/// What luci.mk installs: htdocs/* under /www, root/* under /, the rpcd plugin 0755, the rest
/// 0644; each with the bytes of its source.
fn expected_luci() -> BTreeMap<String, (u32, PathBuf)> {
    let mut want = BTreeMap::new();
    for (rel, _) in files(&app().join("htdocs"), &[]) {
        want.insert(
            format!("www/{rel}"),
            (0o644, app().join("htdocs").join(&rel)),
        );
    }
    for (rel, _) in files(&app().join("root"), &[]) {
        let mode = if rel.starts_with("usr/libexec/rpcd/") {
            0o755
        } else {
            0o644
        };
        want.insert(rel.clone(), (mode, app().join("root").join(&rel)));
    }
    for must in [
        "www/luci-static/resources/view/wifipos/overview.js",
        "www/luci-static/resources/wifipos.js",
        "usr/libexec/rpcd/luci.wifipos",
        "usr/share/rpcd/acl.d/luci-app-wifipos.json",
        "usr/share/luci/menu.d/luci-app-wifipos.json",
    ] {
        assert!(want.contains_key(must), "{must}");
    }
    want
}

/// The translation packages' files (relative path, mode).
fn expected_i18n() -> BTreeMap<String, u32> {
    let mut want = BTreeMap::new();
    for l in languages() {
        want.insert(format!("etc/uci-defaults/luci-i18n-wifipos-{l}"), 0o644);
        want.insert(format!("usr/lib/lua/luci/i18n/wifipos.{l}.lmo"), 0o644);
    }
    want
}

/// Checks the LuCI files in `root` (bytes and modes) and the translations: each .lmo holds
/// translated texts of its po file, each uci-defaults script names the language.
fn check_luci(root: &Path, got: &BTreeMap<String, u32>) {
    for (rel, (mode, src)) in expected_luci() {
        assert_eq!(got.get(&rel), Some(&mode), "/{rel}");
        assert!(
            std::fs::read(root.join(&rel)).unwrap() == std::fs::read(&src).unwrap(),
            "/{rel} differs from {}",
            src.display()
        );
    }
    for (rel, mode) in expected_i18n() {
        assert_eq!(got.get(&rel), Some(&mode), "/{rel}");
    }
    for l in languages() {
        let lmo =
            std::fs::read(root.join(format!("usr/lib/lua/luci/i18n/wifipos.{l}.lmo"))).unwrap();
        let po = std::fs::read_to_string(app().join(format!("po/{l}/wifipos.po"))).unwrap();
        // A few translated messages (one-line msgstr) must be in the catalogue as they are.
        let translated: Vec<&str> = po
            .lines()
            .filter_map(|s| s.strip_prefix("msgstr \"")?.strip_suffix('"'))
            .filter(|s| s.len() > 8 && !s.contains('\\'))
            .collect();
        assert!(translated.len() > 10, "{l}: {}", translated.len());
        for t in translated.iter().take(10) {
            assert!(
                lmo.windows(t.len()).any(|w| w == t.as_bytes()),
                "{l}: '{t}' not in wifipos.{l}.lmo"
            );
        }
        let defaults =
            std::fs::read_to_string(root.join(format!("etc/uci-defaults/luci-i18n-wifipos-{l}")))
                .unwrap();
        assert!(
            defaults.starts_with(&format!("uci set luci.languages.{l}='")),
            "{defaults}"
        );
    }
}

/// All package files in `root` except the package manager's own: exactly wifipos's, LuCI's
/// and the translations'.
fn check_all(root: &Path, bin: &Path, not_ours: &[&str]) {
    let got = files(root, not_ours);
    let mut want: Vec<String> = expected_files(bin).into_keys().collect();
    want.extend(expected_luci().into_keys());
    want.extend(expected_i18n().into_keys());
    want.sort();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want);
    check_luci(root, &got);
}

/// luci.mk's postinst as a router runs it (IPKG_INSTROOT empty): rpcd gets SIGHUP so it
/// loads the new plugin and ACL (killall is a recorder here).
fn check_postinst_on_router(script: &str, scratch: &Path) {
    let bin = scratch.join("fakebin");
    std::fs::create_dir_all(&bin).unwrap();
    let killall = bin.join("killall");
    let log = scratch.join("killall.log");
    std::fs::write(
        &killall,
        format!("#!/bin/sh\necho \"killall $*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &killall,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let s = scratch.join("postinst-on-router");
    std::fs::write(&s, script).unwrap();
    let o = Command::new("sh")
        .arg(&s)
        .env_remove("IPKG_INSTROOT")
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "killall -HUP rpcd\n"
    );
    assert!(
        script.contains("rm -f /tmp/luci-indexcache.*\n"),
        "{script}"
    );
    assert!(
        script.contains("rm -rf /tmp/luci-modulecache/\n"),
        "{script}"
    );
}

fn names(pkgs: &[PathBuf]) -> Vec<&str> {
    pkgs.iter().map(|p| p.to_str().unwrap()).collect()
}

/// The translation packages' names, luci-i18n-wifipos-<lang>.
fn i18n_packages() -> Vec<String> {
    languages()
        .iter()
        .map(|l| format!("luci-i18n-wifipos-{l}"))
        .collect()
}

/// Reproducible builds: each package of `a` has the bytes of its namesake in `b`.
fn assert_same_bytes(a: &[PathBuf], b: &[PathBuf]) {
    for (a, b) in a.iter().zip(b) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{}",
            a.display()
        );
    }
}

// ---------------------------------------------------------------- opkg

#[test]
fn opkg_installs_luci_app_with_translations_upgrades_and_removes_it() {
    let Some(opkg_bin) = openwrt_tool("opkg") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = router_bin(scratch.path());
    let wifipos = build_package("build-ipk", &bin, "x86_64", scratch.path(), 1);
    let v1 = build_luci("ipk", &scratch.path().join("v1"), 1);
    assert!(
        v1[0].ends_with("luci-app-wifipos_0.1.0-1_all.ipk"),
        "{}",
        v1[0].display()
    );
    // Reproducible: the same sources give the same bytes.
    let again = build_luci("ipk", &scratch.path().join("again"), 1);
    assert_same_bytes(&v1, &again);
    let v2 = build_luci("ipk", &scratch.path().join("v2"), 2);
    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    opkg_root(root, &STUBS);

    // Without wifipos the LuCI pages cannot be installed.
    let o = opkg_raw(&opkg_bin, root, &["install", v1[0].to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("wifipos"),
        "opkg names the missing dependency: {t}"
    );
    assert!(opkg_stanza(root, "luci-app-wifipos").is_none());
    assert!(!root.join("www").exists(), "nothing installed: {t}");
    take_log(root);

    // With it: wifipos, the pages, the translations.
    opkg(&opkg_bin, root, &["install", wifipos.to_str().unwrap()]);
    let mut args = vec!["install"];
    args.extend(names(&v1));
    let out = opkg(&opkg_bin, root, &args);
    assert!(
        out.contains("Installing luci-app-wifipos (0.1.0-1)"),
        "{out}"
    );
    check_all(root, &bin, &OPKG_NOT_OURS);
    let st = opkg_stanza(root, "luci-app-wifipos").unwrap();
    assert!(st.contains(&format!("\nDepends: {LUCI_DEPENDS}\n")), "{st}");
    assert!(st.contains("\nArchitecture: all\n"), "{st}");
    for l in languages() {
        let st = opkg_stanza(root, &format!("luci-i18n-wifipos-{l}")).unwrap();
        assert!(st.contains("\nDepends: libc, luci-app-wifipos\n"), "{st}");
    }
    // package-pack.mk's postinst ran default_postinst, which ran luci.mk's (postinst-pkg).
    let log = take_log(root);
    let info = format!("{}//usr/lib/opkg/info", root.display());
    for p in std::iter::once("luci-app-wifipos".to_owned()).chain(i18n_packages()) {
        assert!(
            log.contains(&format!(
                "default_postinst {info}/{p}.postinst configure PKG_UPGRADE=0 pkgname="
            )),
            "{p}: {log:?}"
        );
        assert!(log.contains(&format!("postinst-pkg {p}")), "{p}: {log:?}");
    }
    let post =
        std::fs::read_to_string(root.join("usr/lib/opkg/info/luci-app-wifipos.postinst-pkg"))
            .unwrap();
    check_postinst_on_router(&post, scratch.path());

    // Upgrade.
    let mut args = vec!["install"];
    args.extend(names(&v2));
    let out = opkg(&opkg_bin, root, &args);
    assert!(
        out.contains("Upgrading luci-app-wifipos on root from 0.1.0-1 to 0.1.0-2"),
        "{out}"
    );
    check_all(root, &bin, &OPKG_NOT_OURS);
    assert!(opkg_stanza(root, "luci-app-wifipos")
        .unwrap()
        .contains("\nVersion: 0.1.0-2\n"));
    take_log(root);

    // wifipos stays while the pages need it.
    let o = opkg_raw(&opkg_bin, root, &["remove", "wifipos"]);
    let t = text(&o);
    assert!(
        t.contains("luci-app-wifipos"),
        "opkg names what needs wifipos: {t}"
    );
    assert!(root.join("usr/sbin/wifiposd").is_file(), "{t}");
    assert!(opkg_stanza(root, "wifipos").is_some(), "{t}");
    take_log(root);

    // Removing the translations, then the pages, leaves wifipos exactly as it was.
    let i18n = i18n_packages();
    let mut args = vec!["remove"];
    args.extend(i18n.iter().map(String::as_str));
    args.push("luci-app-wifipos");
    opkg(&opkg_bin, root, &args);
    let left = files(root, &OPKG_NOT_OURS);
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        expected_files(&bin).into_keys().collect::<Vec<_>>()
    );
    assert!(opkg_stanza(root, "luci-app-wifipos").is_none());
    assert!(opkg_stanza(root, "wifipos").is_some());
}

// ---------------------------------------------------------------- apk

#[test]
fn apk_installs_luci_app_with_translations_upgrades_and_deletes_it() {
    let Some(apk_bin) = openwrt_tool("apk") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = router_bin(scratch.path());
    let wifipos = build_package("build-apk", &bin, "x86_64", scratch.path(), 1);
    let v1 = build_luci("apk", &scratch.path().join("v1"), 1);
    assert!(
        v1[0].ends_with("luci-app-wifipos-0.1.0-r1.apk"),
        "{}",
        v1[0].display()
    );
    let again = build_luci("apk", &scratch.path().join("again"), 1);
    assert_same_bytes(&v1, &again);
    let v2 = build_luci("apk", &scratch.path().join("v2"), 2);
    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    apk_root(&apk_bin, root, scratch.path(), &STUBS);

    // Without wifipos the LuCI pages cannot be installed.
    let o = apk_raw(&apk_bin, root, &["add", v1[0].to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("wifipos"),
        "apk names the missing dependency: {t}"
    );
    assert!(!root.join("www").exists(), "nothing installed: {t}");
    take_log(root);

    let mut args = vec!["add", wifipos.to_str().unwrap()];
    args.extend(names(&v1));
    let out = apk(&apk_bin, root, &args);
    assert!(
        out.contains("Installing luci-app-wifipos (0.1.0-r1)"),
        "{out}"
    );
    check_all(root, &bin, &APK_NOT_OURS);
    let info = apk(&apk_bin, root, &["info", "-R", "-a", "luci-app-wifipos"]);
    for d in LUCI_DEPENDS.split(", ") {
        assert!(info.lines().any(|l| l == d), "depends {d}:\n{info}");
    }
    let list =
        std::fs::read_to_string(root.join("lib/apk/packages/luci-app-wifipos.list")).unwrap();
    let mut want: Vec<String> = expected_luci().keys().map(|f| format!("/{f}")).collect();
    want.sort();
    assert_eq!(list.lines().collect::<Vec<_>>(), want);
    // package-pack.mk's post-install: OpenWrt's header, then luci.mk's postinst.
    let log = take_log(root);
    assert!(
        log.contains(&"default_postinst PKG_UPGRADE= pkgname=luci-app-wifipos".to_owned()),
        "{log:?}"
    );
    let dump = Command::new(&apk_bin)
        .arg("adbdump")
        .arg(&v1[0])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.contains("arch: noarch"), "{dump}");
    assert!(dump.contains("killall -HUP rpcd"), "{dump}");

    // Upgrade.
    let mut args = vec!["add"];
    args.extend(names(&v2));
    let out = apk(&apk_bin, root, &args);
    assert!(
        out.contains("Upgrading luci-app-wifipos (0.1.0-r1 -> 0.1.0-r2)"),
        "{out}"
    );
    check_all(root, &bin, &APK_NOT_OURS);
    take_log(root);

    // wifipos stays while the pages need it.
    let o = apk_raw(&apk_bin, root, &["del", "wifipos"]);
    let t = text(&o);
    assert!(
        t.contains("luci-app-wifipos"),
        "apk names what needs wifipos: {t}"
    );
    assert!(root.join("usr/sbin/wifiposd").is_file(), "{t}");
    take_log(root);
    // `apk del` took wifipos out of the world (it goes with the pages now): the owner wants
    // to keep it.
    apk(&apk_bin, root, &["add", "wifipos"]);

    let mut args = vec!["del", "luci-app-wifipos"];
    let i18n = i18n_packages();
    args.extend(i18n.iter().map(String::as_str));
    apk(&apk_bin, root, &args);
    let left = files(root, &APK_NOT_OURS);
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        expected_files(&bin).into_keys().collect::<Vec<_>>()
    );
    let installed = apk(&apk_bin, root, &["info"]);
    assert!(!installed.contains("luci-app-wifipos"), "{installed}");
    assert!(installed.lines().any(|l| l == "wifipos"), "{installed}");
}
