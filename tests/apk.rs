//! The .apk (OpenWrt 25) made by scripts/build-apk with apk-tools v3's `apk mkpkg`, installed,
//! upgraded and deleted by the real apk (built from ../shared/upstream by
//! scripts/build-openwrt-tools) in an offline root: `--root R --initdb --allow-untrusted
//! --no-network`, the Depends installed first as empty stub packages. The scripts run on this
//! machine (`--force-no-chroot --preserve-env`, IPKG_INSTROOT=R) against a stand-in
//! /lib/functions.sh that records default_postinst / default_prerm. Checked: every file and
//! mode, OpenWrt's lib/apk/packages/wifipos.{list,conffiles,conffiles_static}, `apk info`,
//! an upgrade keeping the edited config (the new one as .apk-new), `apk del`.

mod pkgkit;

use pkgkit::*;
use std::path::Path;
use std::process::Command;

const DEPENDS: [&str; 6] = [
    "libc",
    "kmod-nft-core",
    "kmod-nft-nat",
    "kmod-nf-conntrack-netlink",
    "kmod-sched-core",
    "kmod-ifb",
];
const NOT_OURS: [&str; 6] = [
    "scripts.log",
    "etc/apk/",
    "lib/apk/db/",
    "var/",
    "lib/functions.sh",
    "lib/apk/packages/",
];

fn apk(apk: &Path, root: &Path, args: &[&str]) -> String {
    let out = Command::new(apk)
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
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "apk {args:?}: {t}");
    t
}

/// A fresh x86_64 root with empty packages standing for the dependencies.
fn offline_root(apk_bin: &Path, root: &Path, scratch: &Path) {
    let empty = scratch.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut stubs = vec![];
    for p in DEPENDS {
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

/// The package's files in `root`, compared with expected_files (content not compared for
/// `edited`).
fn check_files(root: &Path, bin: &Path, edited: &[&str]) {
    let want = expected_files(bin);
    let mut got = files(root, &NOT_OURS);
    if !want.contains_key("usr/libexec/wifipos-firewall") {
        got.remove("usr/libexec/wifipos-firewall");
    }
    got.remove("etc/config/wifipos.apk-new");
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

#[test]
fn apk_installs_upgrades_keeping_the_edited_config_and_deletes() {
    let Some(apk_bin) = openwrt_tool("apk") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, real) = router_bin(scratch.path());
    let v1 = build_package("build-apk", &bin, "x86_64", scratch.path(), 1);
    assert!(v1.ends_with("wifipos-0.1.0-r1.apk"), "{}", v1.display());
    let v2 = build_package("build-apk", &bin, "x86_64", scratch.path(), 2);
    // Reproducible: the same binary gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    let v1b = build_package("build-apk", &bin, "x86_64", again.path(), 1);
    assert!(std::fs::read(&v1).unwrap() == std::fs::read(&v1b).unwrap());

    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    offline_root(&apk_bin, root, scratch.path());

    // Install.
    let out = apk(&apk_bin, root, &["add", v1.to_str().unwrap()]);
    assert!(out.contains("Installing wifipos (0.1.0-r1)"), "{out}");
    check_files(root, &bin, &[]);
    assert_eq!(
        take_log(root),
        [
            "add_group_and_user pkgname=wifipos",
            "default_postinst PKG_UPGRADE= pkgname=wifipos"
        ]
    );
    // OpenWrt's metadata files, as include/package-pack.mk writes them.
    let meta = root.join("lib/apk/packages");
    let list = std::fs::read_to_string(meta.join("wifipos.list")).unwrap();
    let mut want: Vec<String> = expected_files(&bin)
        .keys()
        .map(|f| format!("/{f}"))
        .collect();
    want.sort();
    assert_eq!(list.lines().collect::<Vec<_>>(), want);
    assert_eq!(
        std::fs::read_to_string(meta.join("wifipos.conffiles")).unwrap(),
        "/etc/config/wifipos\n"
    );
    let shipped_conf = Path::new(ROOT).join("files/etc/config/wifipos");
    assert_eq!(
        std::fs::read_to_string(meta.join("wifipos.conffiles_static")).unwrap(),
        format!("/etc/config/wifipos {}\n", sha256(&shipped_conf))
    );
    for f in ["list", "conffiles", "conffiles_static"] {
        assert_eq!(files(&meta, &[])[&format!("wifipos.{f}")], 0o644, "{f}");
    }
    // apk's view.
    let info = apk(&apk_bin, root, &["info", "-a", "wifipos"]);
    for want in [
        "wifipos-0.1.0-r1 description:",
        "A captive portal that verifies Ed25519-signed QR vouchers",
        "wifipos-0.1.0-r1 webpage:\nhttps://github.com/wifipos/wifipos",
        "wifipos-0.1.0-r1 depends on:\nkmod-ifb\nkmod-nf-conntrack-netlink\nkmod-nft-core\nkmod-nft-nat\nkmod-sched-core\nlibc\n",
        "wifipos-0.1.0-r1 license:\nApache-2.0 MIT",
        "\nusr/sbin/wifiposd\n",
        "\netc/config/wifipos\n",
        "\nlib/apk/packages/wifipos.conffiles_static\n",
    ] {
        assert!(info.contains(want), "{want}:\n{info}");
    }
    let installed = apk(&apk_bin, root, &["info", "-v"]);
    assert!(
        installed.lines().any(|l| l == "wifipos-0.1.0-r1"),
        "{installed}"
    );
    if real {
        let v = Command::new(root.join("usr/sbin/wifiposd"))
            .arg("version")
            .output()
            .unwrap();
        assert!(v.status.success(), "the installed wifiposd: {}", text(&v));
    }

    // Upgrade with the admin's edits: apk protects /etc and writes the new file beside it.
    firewall_recorder(root);
    let edited = edit_config(root);
    let out = apk(&apk_bin, root, &["add", v2.to_str().unwrap()]);
    assert!(
        out.contains("Upgrading wifipos (0.1.0-r1 -> 0.1.0-r2)"),
        "{out}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos")).unwrap(),
        edited
    );
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos.apk-new")).unwrap(),
        std::fs::read(&shipped_conf).unwrap()
    );
    check_files(root, &bin, &["etc/config/wifipos"]);
    // post-upgrade only: apk runs no pre-deinstall on an upgrade, so the firewall rule stays.
    assert_eq!(
        take_log(root),
        [
            "add_group_and_user pkgname=wifipos",
            "default_postinst PKG_UPGRADE=1 pkgname=wifipos"
        ]
    );
    let installed = apk(&apk_bin, root, &["info", "-v"]);
    assert!(
        installed.lines().any(|l| l == "wifipos-0.1.0-r2"),
        "{installed}"
    );

    // Delete: pre-deinstall stops the service and removes the firewall rule; the files go,
    // the admin's edited config stays.
    firewall_recorder(root);
    let out = apk(&apk_bin, root, &["del", "wifipos"]);
    assert!(out.contains("wifipos (0.1.0-r2)"), "{out}");
    assert_eq!(
        take_log(root),
        [
            "default_prerm PKG_UPGRADE= pkgname=wifipos",
            "wifipos-firewall remove"
        ]
    );
    let mut left: Vec<String> = files(root, &NOT_OURS).into_keys().collect();
    if !expected_files(&bin).contains_key("usr/libexec/wifipos-firewall") {
        left.retain(|f| f != "usr/libexec/wifipos-firewall");
    }
    assert_eq!(left, ["etc/config/wifipos"]);
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos")).unwrap(),
        edited
    );
    assert_eq!(
        files(&root.join("lib/apk/packages"), &[]),
        Default::default()
    );
    let installed = apk(&apk_bin, root, &["info", "-v"]);
    assert!(!installed.contains("wifipos"), "{installed}");
    for d in DEPENDS {
        assert!(installed.contains(d), "{d}: {installed}");
    }
}

#[test]
fn apk_del_without_edits_leaves_nothing_and_refuses_a_foreign_arch() {
    let Some(apk_bin) = openwrt_tool("apk") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = router_bin(scratch.path());
    let pkg = build_package("build-apk", &bin, "x86_64", scratch.path(), 1);
    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    offline_root(&apk_bin, root, scratch.path());
    apk(&apk_bin, root, &["add", pkg.to_str().unwrap()]);
    assert!(root.join("usr/sbin/wifiposd").is_file());
    apk(&apk_bin, root, &["del", "wifipos"]);
    assert_eq!(files(root, &NOT_OURS), Default::default());

    // A root of another architecture: apk installs nothing.
    let other = tempfile::tempdir().unwrap();
    let o = Command::new(&apk_bin)
        .arg("--root")
        .arg(other.path())
        .args([
            "--initdb",
            "--arch",
            "aarch64_cortex-a53",
            "--allow-untrusted",
            "--no-network",
            "--force-no-chroot",
            "add",
        ])
        .arg(&pkg)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!other.path().join("usr/sbin/wifiposd").exists());
}
