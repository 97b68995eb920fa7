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

/// The package's files in `root`, compared with expected_files (content not compared for
/// `edited`); apk's wifipos.apk-new beside an edited config left out.
fn check_files(root: &Path, bin: &Path, edited: &[&str]) {
    check_package_files(
        root,
        bin,
        &APK_NOT_OURS,
        "etc/config/wifipos.apk-new",
        edited,
    );
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
    apk_root(&apk_bin, root, scratch.path(), &WIFIPOS_DEPENDS);

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
        installed_version(root);
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
    assert_eq!(
        left_after_removal(root, &bin, &APK_NOT_OURS),
        ["etc/config/wifipos"]
    );
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
    for d in WIFIPOS_DEPENDS {
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
    apk_root(&apk_bin, root, scratch.path(), &WIFIPOS_DEPENDS);
    apk(&apk_bin, root, &["add", pkg.to_str().unwrap()]);
    assert!(root.join("usr/sbin/wifiposd").is_file());
    apk(&apk_bin, root, &["del", "wifipos"]);
    assert_eq!(files(root, &APK_NOT_OURS), Default::default());

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
