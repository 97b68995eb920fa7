# shellcheck shell=bash
# What build-ipk and build-apk share: refusing a binary OpenWrt cannot run (its ELF class,
# byte order and machine against the package architecture; a glibc interpreter), the
# Depends that follow from what it links, the package's files (wifiposd and everything under
# files/, with OpenWrt's modes), and the maintainer-script pieces and conffiles that
# openwrt/Makefile defines, so the SDK and these scripts ship the same thing.
# Sourced with `root` set to the repository.
: "${root:?scripts/lib/pkg.sh needs root set to the repository}"

# die SENTENCE: the one sentence a user sees, exit 2.
die() { echo "$(basename "$0"): $*" >&2; exit 2; }

pkg_version() { sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1; }
# PKG_RELEASE of openwrt/Makefile, or WIFIPOS_PKG_RELEASE (the tests build upgrades with it).
pkg_release() {
  local r=${WIFIPOS_PKG_RELEASE:-$(sed -n 's/^PKG_RELEASE:=//p' "$root/openwrt/Makefile")}
  [[ $r =~ ^[0-9]+$ ]] || die "the package release '$r' must be a number."
  echo "$r"
}
pkg_stamp() { echo "${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"; }

# makefile_define NAME: the body of `define Package/wifipos/NAME` in openwrt/Makefile, with
# make's `$$` turned into the `$` the shell sees.
makefile_define() {
  awk -v d="define Package/wifipos/$1" '$0 == "endef" { on = 0 } on { print } $0 == d { on = 1 }' \
    "$root/openwrt/Makefile" | sed 's/\$\$/$/g'
}

# arch_elf ARCH: "CLASS DATA MACHINE" as readelf -h prints them, for an OpenWrt package
# architecture (`opkg print-architecture` / `apk --print-arch` on the router).
arch_elf() {
  case "$1" in
    x86_64) echo "ELF64 little X86-64" ;;
    i386_*) echo "ELF32 little 80386" ;;
    aarch64_*) echo "ELF64 little AArch64" ;;
    arm_*) echo "ELF32 little ARM" ;;
    armeb_*) echo "ELF32 big ARM" ;;
    mipsel_*) echo "ELF32 little MIPS" ;;
    mips_*) echo "ELF32 big MIPS" ;;
    mips64el_*) echo "ELF64 little MIPS" ;;
    mips64_*) echo "ELF64 big MIPS" ;;
    powerpc_*) echo "ELF32 big PowerPC" ;;
    powerpc64_*) echo "ELF64 big PowerPC64" ;;
    riscv64_*) echo "ELF64 little RISC-V" ;;
    loongarch64_*) echo "ELF64 little LoongArch" ;;
    *) return 1 ;;
  esac
}

# rust_target ARCH: the Rust target that builds for it (for the sentences below).
rust_target() {
  case "$1" in
    x86_64) echo x86_64-unknown-linux-musl ;;
    aarch64_*) echo aarch64-unknown-linux-musl ;;
    arm_*vfp*|arm_*neon*) echo armv7-unknown-linux-musleabihf ;;
    arm_*) echo armv7-unknown-linux-musleabi ;;
    mipsel_*) echo mipsel-unknown-linux-musl ;;
    mips_*) echo mips-unknown-linux-musl ;;
    *) echo "the matching <cpu>-unknown-linux-musl target" ;;
  esac
}

# Shared libraries a dynamically linked wifiposd may need, and the OpenWrt package of each.
lib_package() {
  case "$1" in
    libc.so|libc.so.*|ld-musl-*) echo libc ;;
    libnftnl.so.11) echo libnftnl11 ;;
    libmnl.so.0) echo libmnl0 ;;
    libsqlite3.so.0) echo libsqlite3-0 ;;
    libgcc_s.so.1) echo libgcc1 ;;
    *) return 1 ;;
  esac
}

# The kernel side, whatever the binary links: nf_tables with sets, timeouts and reject, the
# redirect to the portal, and ctnetlink (the daemon deletes a device's conntrack entries).
KMOD_DEPENDS=(kmod-nft-core kmod-nft-nat kmod-nf-conntrack-netlink)

# check_binary BINARY ARCH: refuses what OpenWrt on ARCH cannot run; on success sets DEPENDS
# (an array of package names: libc first, then the libraries it links, then KMOD_DEPENDS) and
# LINKAGE ("static" or the musl interpreter).
check_binary() {
  local bin=$1 arch=$2 hdr want class data machine got interp lib pkg target
  [ -f "$bin" ] || die "no binary at $bin: build one first (scripts/build-musl)."
  want=$(arch_elf "$arch") || die "'$arch' is not an OpenWrt package architecture this script knows (e.g. x86_64, aarch64_cortex-a53, arm_cortex-a7_neon-vfpv4, mipsel_24kc): run 'opkg print-architecture' on the router."
  target=$(rust_target "$arch")
  [ "$(head -c 4 "$bin" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] ||
    die "$bin is not a Linux program (no ELF header): give it the wifiposd that cargo built for $target."
  hdr=$(LC_ALL=C readelf -h "$bin") || die "$bin is a damaged ELF file: build it again for $target."
  class=$(sed -n 's/^ *Class: *//p' <<<"$hdr")
  data=$(sed -n 's/^ *Data: *2.s complement, \([a-z]*\) endian/\1/p' <<<"$hdr")
  machine=$(sed -n 's/^ *Machine: *//p' <<<"$hdr")
  case "$machine" in
    "Advanced Micro Devices X86-64") machine=X86-64 ;;
    "Intel 80386") machine=80386 ;;
    "MIPS R3000") machine=MIPS ;;
    RISC-V|AArch64|ARM|PowerPC|PowerPC64|LoongArch) ;;
  esac
  got="$class $data $machine"
  [ "$got" = "$want" ] ||
    die "$bin is built for $got, not for $arch ($want): build it for $target (scripts/build-musl, or scripts/check-routers for router CPUs)."
  if [[ $arch == arm_* ]] && [[ $arch != *vfp* && $arch != *neon* ]] &&
     grep -q "hard-float ABI" <<<"$hdr"; then
    die "$bin uses the hard-float ABI but $arch has no FPU: build it for armv7-unknown-linux-musleabi (soft float)."
  fi
  interp=$(LC_ALL=C readelf -lW "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
  case "$interp" in
    "") LINKAGE=static ;;
    /lib/ld-musl-*.so.1) LINKAGE=$interp ;;
    *) die "$bin needs $interp (glibc), but OpenWrt is built on musl: build a static musl binary with scripts/build-musl." ;;
  esac
  DEPENDS=(libc)
  if [ "$LINKAGE" != static ]; then
    for lib in $(LC_ALL=C readelf -dW "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
      pkg=$(lib_package "$lib") ||
        die "$bin links $lib, which no OpenWrt package this script knows provides: link it statically (scripts/build-musl)."
      [[ " ${DEPENDS[*]} " == *" $pkg "* ]] || DEPENDS+=("$pkg")
    done
  fi
  DEPENDS+=("${KMOD_DEPENDS[@]}")
}

# file_mode PATH (relative to files/): 0600 for UCI config, 0755 for programs, else 0644.
file_mode() {
  case "$1" in
    etc/config/*) echo 0600 ;;
    etc/init.d/*|etc/uci-defaults/*|usr/libexec/*|usr/sbin/*|usr/bin/*|sbin/*|bin/*) echo 0755 ;;
    *) if [ -x "$root/files/$1" ]; then echo 0755; else echo 0644; fi ;;
  esac
}

# stage_files BINARY DIR: the package's file tree, as on the router: /usr/sbin/wifiposd and
# every file under files/ (a new file there is packaged without editing these scripts).
stage_files() {
  local bin=$1 dir=$2 f
  install -D -m 0755 "$bin" "$dir/usr/sbin/wifiposd"
  while IFS= read -r -d '' f; do
    f=${f#"$root/files/"}
    install -D -m "$(file_mode "$f")" "$root/files/$f" "$dir/$f"
  done < <(find "$root/files" -type f -print0 | sort -z)
  find "$dir" -type d -exec chmod 0755 {} +
}

# conffiles: the package's conffiles (Package/wifipos/conffiles), each checked to be shipped.
conffiles() {
  local dir=$1 f
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    [ -f "$dir$f" ] || die "openwrt/Makefile names $f as a conffile but files/ has no such file."
    echo "$f"
  done < <(makefile_define conffiles)
}

# description: Package/wifipos/description, one line.
description() { makefile_define description | sed 's/^[[:space:]]*//' | tr '\n' ' ' | sed 's/ *$//'; }

# tar_dir DIR OUT: a reproducible gzipped tar of DIR's contents (sorted, root-owned, mtime).
tar_dir() {
  tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(pkg_stamp)" \
    -C "$1" -cf - . | gzip -9n > "$2"
}
