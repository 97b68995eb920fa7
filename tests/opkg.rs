//! The .ipk installed, upgraded and removed by OpenWrt's real opkg (opkg-lede built from
//! ../shared/upstream by scripts/build-openwrt-tools) in an offline root (`-o ROOT`) whose
//! status file lists the package's Depends as installed. Every file and mode, the conffile and
//! its checksum in opkg's status, the admin's edited config kept across an upgrade (the new
//! one as wifipos-opkg), removal as OpenWrt users know it. The maintainer scripts run
//! (`--force-postinstall`, IPKG_INSTROOT=ROOT) against a stand-in /lib/functions.sh that
//! records default_postinst / default_prerm, so the test sees which script opkg ran with what
//! arguments, and that the firewall rule is removed on removal only, not on upgrade.
//! build-ipk's refusals of binaries OpenWrt cannot run are checked here too.

mod pkgkit;

use pkgkit::*;
use std::path::Path;
use std::process::Command;

/// The package's files in `root`, compared with expected_files (content not compared for
/// `edited`); opkg's wifipos-opkg beside an edited config left out.
fn check_files(root: &Path, bin: &Path, edited: &[&str]) {
    check_package_files(root, bin, &OPKG_NOT_OURS, "etc/config/wifipos-opkg", edited);
}

#[test]
fn opkg_installs_upgrades_keeping_the_edited_config_and_removes() {
    let Some(opkg_bin) = openwrt_tool("opkg") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, real) = router_bin(scratch.path());
    let v1 = build_package("build-ipk", &bin, "x86_64", scratch.path(), 1);
    let v2 = build_package("build-ipk", &bin, "x86_64", scratch.path(), 2);
    assert!(
        v2.ends_with("wifipos_0.1.0-2_x86_64.ipk"),
        "{}",
        v2.display()
    );
    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    opkg_root(root, &WIFIPOS_DEPENDS);

    // Install.
    let out = opkg(&opkg_bin, root, &["install", v1.to_str().unwrap()]);
    assert!(out.contains("Installing wifipos (0.1.0-1)"), "{out}");
    check_files(root, &bin, &[]);
    let st = opkg_stanza(root, "wifipos").expect("wifipos in opkg's status");
    assert!(st.contains("\nVersion: 0.1.0-1\n"), "{st}");
    assert!(st.contains("\nStatus: install user installed\n"), "{st}");
    assert!(
        st.contains(&format!("\nDepends: {}\n", WIFIPOS_DEPENDS.join(", "))),
        "{st}"
    );
    let shipped_conf = Path::new(ROOT).join("files/etc/config/wifipos");
    // opkg-lede records the conffile's sha256 (older opkg: md5) to tell an edited one later.
    assert!(
        st.contains(&format!(
            "\nConffiles:\n /etc/config/wifipos {}\n",
            sha256(&shipped_conf)
        )),
        "{st}"
    );
    let list = std::fs::read_to_string(root.join("usr/lib/opkg/info/wifipos.list")).unwrap();
    for f in expected_files(&bin).keys() {
        assert!(list.lines().any(|l| l == format!("/{f}")), "/{f}:\n{list}");
    }
    for s in ["postinst", "prerm", "prerm-pkg", "control", "conffiles"] {
        assert!(
            root.join(format!("usr/lib/opkg/info/wifipos.{s}"))
                .is_file(),
            "{s}"
        );
    }
    // opkg joins the offline root and the info directory with a double slash.
    let info = format!("{}//usr/lib/opkg/info", root.display());
    assert_eq!(
        take_log(root),
        [format!(
            "default_postinst {info}/wifipos.postinst configure PKG_UPGRADE=0 pkgname="
        )]
    );
    if real {
        assert!(installed_version(root).contains("0.1.0"));
    }

    // Upgrade with the admin's edits in /etc/config/wifipos.
    firewall_recorder(root);
    let edited = edit_config(root);
    let out = opkg(&opkg_bin, root, &["install", v2.to_str().unwrap()]);
    assert!(
        out.contains("Upgrading wifipos on root from 0.1.0-1 to 0.1.0-2"),
        "{out}"
    );
    assert!(
        out.contains("wifipos-opkg"),
        "opkg tells where the new config is: {out}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos")).unwrap(),
        edited
    );
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos-opkg")).unwrap(),
        std::fs::read(&shipped_conf).unwrap()
    );
    check_files(root, &bin, &["etc/config/wifipos"]);
    let st = opkg_stanza(root, "wifipos").unwrap();
    assert!(st.contains("\nVersion: 0.1.0-2\n"), "{st}");
    // The old prerm ran as an upgrade (service stopped, firewall rule kept), then the new
    // postinst.
    assert_eq!(
        take_log(root),
        [
            format!("default_prerm {info}/wifipos.prerm upgrade 0.1.0-2 PKG_UPGRADE=1 pkgname="),
            format!("default_postinst {info}/wifipos.postinst configure PKG_UPGRADE=1 pkgname="),
        ]
    );

    // Remove: the service is stopped and disabled, the firewall rule removed; opkg deletes
    // every file but keeps the admin's edited config (and leaves its own wifipos-opkg).
    firewall_recorder(root);
    let out = opkg(&opkg_bin, root, &["remove", "wifipos"]);
    assert!(out.contains("Removing package wifipos"), "{out}");
    assert!(out.contains("Not deleting modified conffile"), "{out}");
    assert_eq!(
        take_log(root),
        [
            format!("default_prerm {info}/wifipos.prerm remove PKG_UPGRADE=0 pkgname="),
            "wifipos-firewall remove".to_owned(),
        ]
    );
    // The recorder stands for a helper the package does not ship yet: opkg leaves it.
    assert_eq!(
        left_after_removal(root, &bin, &OPKG_NOT_OURS),
        ["etc/config/wifipos", "etc/config/wifipos-opkg"]
    );
    assert_eq!(
        std::fs::read(root.join("etc/config/wifipos")).unwrap(),
        edited
    );
    assert!(opkg_stanza(root, "wifipos").is_none());
    assert!(!root.join("usr/lib/opkg/info/wifipos.list").exists());
    for d in WIFIPOS_DEPENDS {
        assert!(opkg_stanza(root, d).is_some(), "{d} still installed");
    }
}

#[test]
fn opkg_remove_without_edits_leaves_nothing() {
    let Some(opkg_bin) = openwrt_tool("opkg") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = router_bin(scratch.path());
    let ipk = build_package("build-ipk", &bin, "x86_64", scratch.path(), 1);
    let r = tempfile::tempdir().unwrap();
    let root = r.path();
    opkg_root(root, &WIFIPOS_DEPENDS);
    opkg(&opkg_bin, root, &["install", ipk.to_str().unwrap()]);
    assert!(root.join("usr/sbin/wifiposd").is_file());
    opkg(&opkg_bin, root, &["remove", "wifipos"]);
    assert_eq!(
        files(root, &OPKG_NOT_OURS),
        Default::default(),
        "an unedited config goes with the package"
    );
    // With no firewall helper installed the removal still succeeds (the hook is guarded).
    let log = take_log(root);
    assert!(
        log.iter().all(|l| !l.contains("wifipos-firewall")),
        "{log:?}"
    );
}

#[test]
fn opkg_refuses_a_package_for_another_architecture() {
    let Some(opkg_bin) = openwrt_tool("opkg") else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    // A package labelled for a router CPU this root does not have: opkg must install nothing.
    let r = tempfile::tempdir().unwrap();
    opkg_root(r.path(), &WIFIPOS_DEPENDS);
    let (bin, _) = router_bin(scratch.path());
    let ipk = build_package("build-ipk", &bin, "x86_64", scratch.path(), 1);
    std::fs::write(
        r.path().join("etc/opkg.conf"),
        "dest root /\nlists_dir ext /var/opkg-lists\narch all 1\narch aarch64_cortex-a53 10\n",
    )
    .unwrap();
    let _ = Command::new(&opkg_bin)
        .arg("-o")
        .arg(r.path())
        .arg("-f")
        .arg(r.path().join("etc/opkg.conf"))
        .args(["install", ipk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!r.path().join("usr/sbin/wifiposd").exists());
    assert!(opkg_stanza(r.path(), "wifipos").is_none());
}

/// Runs `script` (build-ipk or build-apk) for `bin` as `arch` into `out`, asserted to refuse
/// with exit status 2 (`what` names the case in the failure); its stderr.
fn refusal(script: &str, bin: &Path, arch: &str, out: &Path, what: &str) -> String {
    let o = build_script(script, bin, arch, out).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// build-ipk and build-apk refuse, with one sentence saying what to build instead.
#[test]
fn build_scripts_refuse_binaries_openwrt_cannot_run() {
    let scratch = tempfile::tempdir().unwrap();
    let (bin, _) = router_bin(scratch.path());
    let refuse = |script: &str, bin: &Path, arch: &str, says: &str| {
        let err = refusal(
            script,
            bin,
            arch,
            &scratch.path().join("out"),
            &format!("{script} {arch}"),
        );
        assert!(err.contains(says), "{script} {arch}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    };
    for script in ["build-ipk", "build-apk"] {
        // The glibc build cargo test makes: OpenWrt has no glibc loader.
        refuse(
            script,
            Path::new(env!("CARGO_BIN_EXE_wifiposd")),
            "x86_64",
            "(glibc), but OpenWrt is built on musl: build a static musl binary with scripts/build-musl.",
        );
        // An x86_64 program labelled for routers' CPUs.
        for (arch, target) in [
            ("aarch64_cortex-a53", "aarch64-unknown-linux-musl"),
            ("aarch64_generic", "aarch64-unknown-linux-musl"),
            ("arm_cortex-a7_neon-vfpv4", "armv7-unknown-linux-musleabihf"),
            ("arm_cortex-a7", "armv7-unknown-linux-musleabi"),
            ("mipsel_24kc", "mipsel-unknown-linux-musl"),
            ("mips_24kc", "mips-unknown-linux-musl"),
            ("i386_pentium4", "cpu"),
        ] {
            refuse(script, &bin, arch, &format!("not for {arch}"));
            if target != "cpu" {
                refuse(script, &bin, arch, &format!("build it for {target}"));
            }
        }
        refuse(
            script,
            &bin,
            "sparc_v8",
            "not an OpenWrt package architecture",
        );
        refuse(
            script,
            &Path::new(ROOT).join("README.md"),
            "x86_64",
            "is not a Linux program",
        );
        refuse(
            script,
            &scratch.path().join("nope"),
            "x86_64",
            "no binary at",
        );
    }
    assert!(!scratch.path().join("out").exists(), "nothing was written");
}

/// A bare ELF header (no program headers: readelf sees a static program).
fn elf_header(class64: bool, little: bool, machine: u16, flags: u32) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F'];
    h.push(if class64 { 2 } else { 1 });
    h.push(if little { 1 } else { 2 });
    h.push(1);
    h.resize(16, 0);
    let u16b = |v: u16| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let u32b = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    h.extend(u16b(2)); // ET_EXEC
    h.extend(u16b(machine));
    h.extend(u32b(1));
    let word = if class64 { 8 } else { 4 };
    h.extend(std::iter::repeat_n(0u8, 3 * word)); // entry, phoff, shoff
    h.extend(u32b(flags));
    h.extend(u16b(if class64 { 64 } else { 52 }));
    h.extend(u16b(0));
    h.extend(u16b(0));
    h.extend(u16b(0));
    h.extend(u16b(0));
    h.extend(u16b(0));
    h
}

/// The architecture check accepts each router CPU's binary for its OpenWrt names and no
/// other, including the ARM float ABI (a hard-float binary needs an FPU).
#[test]
fn build_ipk_matches_elf_machine_class_byte_order_and_float_abi_to_the_arch() {
    let dir = tempfile::tempdir().unwrap();
    // (binary, its header, architectures that take it, others with the refusal's words)
    type Case<'a> = (&'a str, Vec<u8>, &'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case; 6] = [
        (
            "aarch64",
            elf_header(true, true, 183, 0),
            &[
                "aarch64_cortex-a53",
                "aarch64_cortex-a72",
                "aarch64_generic",
            ],
            &[
                ("x86_64", "not for x86_64"),
                ("arm_cortex-a7_neon-vfpv4", "ELF64"),
            ],
        ),
        (
            "armhf",
            elf_header(false, true, 40, 0x0500_0400),
            &["arm_cortex-a7_neon-vfpv4", "arm_cortex-a9_vfpv3-d16"],
            &[
                (
                    "arm_cortex-a7",
                    "hard-float ABI but arm_cortex-a7 has no FPU",
                ),
                ("aarch64_generic", "ELF32 little ARM"),
            ],
        ),
        (
            "armel",
            elf_header(false, true, 40, 0x0500_0200),
            &[
                "arm_cortex-a7",
                "arm_cortex-a7_neon-vfpv4",
                "arm_arm926ej-s",
            ],
            &[("mipsel_24kc", "ELF32 little ARM")],
        ),
        (
            "mipsel",
            elf_header(false, true, 8, 0),
            &["mipsel_24kc", "mipsel_74kc"],
            &[
                ("mips_24kc", "ELF32 little MIPS"),
                ("mips64el_octeonplus", "ELF32"),
            ],
        ),
        (
            "mips",
            elf_header(false, false, 8, 0),
            &["mips_24kc", "mips_mips32"],
            &[("mipsel_24kc", "ELF32 big MIPS")],
        ),
        (
            "x86_64",
            elf_header(true, true, 62, 0),
            &["x86_64"],
            &[("i386_pentium4", "ELF64 little X86-64")],
        ),
    ];
    for (name, bytes, accepted, refused) in cases {
        let bin = dir.path().join(name);
        std::fs::write(&bin, bytes).unwrap();
        for arch in accepted {
            let out = build_script("build-ipk", &bin, arch, &dir.path().join("out"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{name} as {arch}: {}", text(&out));
        }
        for (arch, says) in refused {
            let what = format!("{name} as {arch}");
            let err = refusal("build-ipk", &bin, arch, &dir.path().join("out"), &what);
            assert!(err.contains(says), "{what}: {err}");
        }
    }
}
