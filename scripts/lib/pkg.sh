# shellcheck shell=bash
# What build-ipk, build-apk and build-luci share: refusing a binary OpenWrt cannot run (its ELF class,
# byte order and machine against the package architecture; a glibc interpreter), the
# Depends that follow from what it links, the package's files (wifiposd and everything under
# files/, with OpenWrt's modes), and the maintainer-script pieces and conffiles that
# openwrt/Makefile defines, so the SDK and these scripts ship the same thing; the .ipk and .apk
# assembly (package-pack.mk's maintainer-script wrappers, the ipk's tars, apk mkpkg); and what
# luci.mk does for openwrt/luci-app-wifipos (its files, Depends, postinst, translations).
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
# redirect to the portal, ctnetlink (the daemon deletes a device's conntrack entries), and
# traffic shaping for speed limits (HTB, u32, mirred: kmod-sched-core; the upload side: kmod-ifb).
KMOD_DEPENDS=(kmod-nft-core kmod-nft-nat kmod-nf-conntrack-netlink kmod-sched-core kmod-ifb)

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

# ---- Package assembly, as OpenWrt's include/package-pack.mk does it ----

# ipk_wrappers CONTROL-DIR: the postinst and prerm package-pack.mk writes for every package;
# default_postinst / default_prerm run the package's own postinst-pkg / prerm-pkg.
ipk_wrappers() {
  cat > "$1/postinst" <<'POST'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
POST
  cat > "$1/prerm" <<'PRERM'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
PRERM
  chmod 0755 "$1/postinst" "$1/prerm"
}

# ipk_pack DIR OUT: DIR holds control/ and data/; writes the .ipk OUT (debian-binary,
# control.tar.gz, data.tar.gz in an outer gzipped tar, reproducibly).
ipk_pack() {
  local dir=$1 out=$2
  echo "2.0" > "$dir/debian-binary"
  tar_dir "$dir/data" "$dir/data.tar.gz"
  tar_dir "$dir/control" "$dir/control.tar.gz"
  tar --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$(pkg_stamp)" -C "$dir" \
    -cf - ./debian-binary ./control.tar.gz ./data.tar.gz | gzip -9n > "$out"
}

# installed_size DIR: the bytes of DIR's files, for Installed-Size.
installed_size() { du -sb --apparent-size "$1" | cut -f1; }

# find_apk: sets APK_BIN to apk-tools v3 (APK, or PATH, or scripts/build-openwrt-tools) and
# checks apk mkpkg will record root as the owner.
find_apk() {
  [ "$(id -u)" -eq 0 ] || die "run it as root (or under fakeroot): apk mkpkg records file owners, and OpenWrt's are root."
  APK_BIN=${APK:-}
  if [ -z "$APK_BIN" ]; then
    if apk --version 2>/dev/null | grep -q '^apk-tools 3'; then APK_BIN=apk
    else APK_BIN=$("$root/scripts/build-openwrt-tools" apk)/apk; fi
  fi
  "$APK_BIN" --version | grep -q '^apk-tools 3' || die "$APK_BIN is not apk-tools v3: run scripts/build-openwrt-tools apk."
}

# apk_scripts DIR NAME POSTINST-BODY PRERM-BODY: post-install, post-upgrade and pre-deinstall
# as package-pack.mk writes them with CONFIG_USE_APK: OpenWrt's header, then the package's own
# postinst / prerm (given without their #! line; either may be empty).
apk_scripts() {
  local dir=$1 name=$2 post=$3 pre=$4
  mkdir -p "$dir"
  {
    cat <<'SCRIPT'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
export root="${IPKG_INSTROOT}"
SCRIPT
    echo "export pkgname=\"$name\""
    echo add_group_and_user
    echo default_postinst
    [ -z "$post" ] || printf '%s\n' "$post"
  } > "$dir/post-install"
  {
    echo '#!/bin/sh'
    echo 'export PKG_UPGRADE=1'
    sed '/^\s*#!/d' "$dir/post-install"
  } > "$dir/post-upgrade"
  {
    cat <<'SCRIPT'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
export root="${IPKG_INSTROOT}"
SCRIPT
    echo "export pkgname=\"$name\""
    echo default_prerm
    [ -z "$pre" ] || printf '%s\n' "$pre"
  } > "$dir/pre-deinstall"
  chmod 0755 "$dir"/*
}

# apk_list FILES-DIR NAME: lib/apk/packages/NAME.list, every file and link of the package
# (package-pack.mk writes it for every apk).
apk_list() {
  local dir=$1 name=$2 list
  list=$(cd "$dir" && find . -type f,l -printf '/%P\n' | LC_ALL=C sort)
  mkdir -p "$dir/lib/apk/packages"
  printf '%s\n' "$list" > "$dir/lib/apk/packages/$name.list"
  chmod 0644 "$dir/lib/apk/packages/$name.list"
}

# apk_touch FILES-DIR: directory modes and the reproducible mtime.
apk_touch() {
  find "$1" -type d -exec chmod 0755 {} +
  find "$1" -exec touch -h -d "@$(pkg_stamp)" {} +
}

# ---- luci-app-wifipos, as the LuCI feed's luci.mk packages it ----
LUCI_APP=$root/openwrt/luci-app-wifipos
# shellcheck disable=SC2034 # used by build-luci
LUCI_NAME=luci-app-wifipos
LUCI_BASENAME=wifipos

# luci_var NAME: NAME:= from openwrt/luci-app-wifipos/Makefile.
luci_var() { sed -n "s/^$1:=//p" "$LUCI_APP/Makefile" | head -n1; }

# luci_release: WIFIPOS_PKG_RELEASE (the tests build upgrades with it), else PKG_RELEASE of
# the LuCI Makefile, else luci.mk's default 1.
luci_release() {
  local r=${WIFIPOS_PKG_RELEASE:-$(luci_var PKG_RELEASE)}; r=${r:-1}
  [[ $r =~ ^[0-9]+$ ]] || die "the LuCI package release '$r' must be a number."
  echo "$r"
}

# luci_depends: sets DEPENDS to libc and LUCI_DEPENDS (the '+' dropped), after checking that
# every ucode module the rpcd plugins import has its ucode-mod-* package there.
luci_depends() {
  local d m f
  DEPENDS=(libc)
  for d in $(luci_var LUCI_DEPENDS); do DEPENDS+=("${d#+}"); done
  for f in "$LUCI_APP"/root/usr/libexec/rpcd/*; do
    [ -f "$f" ] || continue
    while IFS= read -r m; do
      [[ " ${DEPENDS[*]} " == *" ucode-mod-$m "* ]] ||
        die "$f imports ucode's '$m' module, but LUCI_DEPENDS in $LUCI_APP/Makefile lacks +ucode-mod-$m."
    done < <(sed -n "s/^import .* from '\([a-z0-9_]*\)';.*/\1/p" "$f" | sort -u)
  done
}

# luci_stage DIR: luci.mk's install: htdocs/* to /www, root/* to /; the rpcd plugins (and
# whatever is executable in the source) 0755, the rest 0644, directories 0755.
luci_stage() {
  local dir=$1 f rel dest mode
  while IFS= read -r -d '' f; do
    rel=${f#"$LUCI_APP/"}
    case "$rel" in
      htdocs/*) dest=www/${rel#htdocs/} ;;
      root/*) dest=${rel#root/} ;;
      *) continue ;;
    esac
    mode=0644
    case "$dest" in usr/libexec/rpcd/*) mode=0755 ;; esac
    [ ! -x "$f" ] || mode=0755
    install -D -m "$mode" "$f" "$dir/$dest"
  done < <(find "$LUCI_APP/htdocs" "$LUCI_APP/root" -type f -print0 | sort -z)
  find "$dir" -type d -exec chmod 0755 {} +
}

# luci_languages: the translations under po/ (luci.mk's LUCI_LANGUAGES).
luci_languages() {
  local d
  for d in "$LUCI_APP"/po/*/; do
    d=$(basename "$d")
    [ "$d" = templates ] || echo "$d"
  done
}

# luci_lang_title LANG: luci.mk's LUCI_LANG.<lang>.
luci_lang_title() {
  case "$1" in
    de) echo "Deutsch (German)" ;;
    es) echo "Español (Spanish)" ;;
    fr) echo "Français (French)" ;;
    it) echo "Italiano (Italian)" ;;
    nl) echo "Nederlands (Dutch)" ;;
    pt) echo "Português (Portuguese)" ;;
    *) die "no LuCI language title known for '$1' (add it to luci_lang_title in scripts/lib/pkg.sh)." ;;
  esac
}

# luci_postinst: Package/luci-app-wifipos/postinst as luci.mk defines it (no uci-defaults in
# root/etc, so only LuCI's caches and rpcd's list of plugins are refreshed).
luci_postinst() {
  cat <<'POST'
[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
POST
}

# luci_i18n_postinst LANG: luci.mk's postinst of luci-i18n-wifipos-LANG (adds the language
# to LuCI's list once, on the router).
luci_i18n_postinst() {
  local n=luci-i18n-$LUCI_BASENAME-$1
  # shellcheck disable=SC2016 # ${IPKG_INSTROOT} is for the router's shell
  printf '[ -n "${IPKG_INSTROOT}" ] || {\n\t(. /etc/uci-defaults/%s) && rm -f /etc/uci-defaults/%s\n\texit 0\n}\n' "$n" "$n"
}

# luci_i18n_stage LANG DIR PO2LMO: the translation package's files: its uci-defaults script
# and every po/LANG/*.po compiled by LuCI's po2lmo to /usr/lib/lua/luci/i18n/NAME.LANG.lmo.
luci_i18n_stage() {
  local lang=$1 dir=$2 po2lmo=$3 po name
  mkdir -p "$dir/etc/uci-defaults" "$dir/usr/lib/lua/luci/i18n"
  echo "uci set luci.languages.${lang//-/_}='$(luci_lang_title "$lang")'; uci commit luci" \
    > "$dir/etc/uci-defaults/luci-i18n-$LUCI_BASENAME-$lang"
  for po in "$LUCI_APP/po/$lang"/*.po; do
    name=$(basename "$po" .po)
    "$po2lmo" "$po" "$dir/usr/lib/lua/luci/i18n/$name.$lang.lmo" ||
      die "po2lmo could not compile $po: fix the translation file."
    [ -s "$dir/usr/lib/lua/luci/i18n/$name.$lang.lmo" ] ||
      die "po2lmo made an empty catalogue from $po: it has no translated message."
  done
  find "$dir" -type f -exec chmod 0644 {} +
  find "$dir" -type d -exec chmod 0755 {} +
}
