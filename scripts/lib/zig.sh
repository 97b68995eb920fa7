# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the scripts that source it
# Sourced by scripts/build-c-deps, build-musl, check-routers and router-vm: zig (from PyPI) as
# the C compiler, archiver and linker for musl targets. Owns the mapping from a Rust target to
# zig's target and CPU, and the wrappers cargo and configure call.
#   zig_setup DIR        installs ziglang if missing; writes DIR/bin/zig and keeps zig's
#                        caches in DIR/cache; puts DIR/bin first on PATH.
#   zig_target RUST      sets ZIG_TRIPLE, ZIG_CPU, GNU_HOST, RUST_TARGET (short names allowed:
#                        x86_64, aarch64, armv7, mipsel).
#   zig_wrappers         writes DIR/bin/<rust target>-{cc,ar} for the current target and sets
#                        ZIG_CC and ZIG_AR to them.
#   zig_cargo_env        exports CC_/AR_/CARGO_TARGET_*_LINKER for cargo with those wrappers.

zig_setup() {
  ZIG_DIR=$(mkdir -p "$1" && cd "$1" && pwd)
  if ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "zig: installing ziglang from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check ziglang >&2
  fi
  mkdir -p "$ZIG_DIR/bin" "$ZIG_DIR/cache"
  cat > "$ZIG_DIR/bin/zig" <<WRAP
#!/bin/sh
export ZIG_GLOBAL_CACHE_DIR="$ZIG_DIR/cache" ZIG_LOCAL_CACHE_DIR="$ZIG_DIR/cache"
exec python3 -m ziglang "\$@"
WRAP
  chmod +x "$ZIG_DIR/bin/zig"
  case ":$PATH:" in *":$ZIG_DIR/bin:"*) ;; *) PATH="$ZIG_DIR/bin:$PATH" ;; esac
  export PATH
}

zig_target() {
  case $1 in
    x86_64|x86_64-unknown-linux-musl)
      RUST_TARGET=x86_64-unknown-linux-musl ZIG_TRIPLE=x86_64-linux-musl ZIG_CPU=x86_64
      GNU_HOST=x86_64-linux-musl ;;
    # Filogic (Cortex-A53/A73), ipq807x (A53): the ARMv8.0 baseline.
    aarch64|aarch64-unknown-linux-musl)
      RUST_TARGET=aarch64-unknown-linux-musl ZIG_TRIPLE=aarch64-linux-musl ZIG_CPU=generic
      GNU_HOST=aarch64-linux-musl ;;
    # The same CPU features as Rust's armv7-unknown-linux-musleabihf (+v7 +vfp3 -d32 +thumb2
    # -neon): runs on OpenWrt's arm_cortex-a7_neon-vfpv4 (ipq40xx) and on ARMv7 routers without
    # NEON (arm_cortex-a9_vfpv3-d16, mvebu).
    armv7|armv7-unknown-linux-musleabihf)
      RUST_TARGET=armv7-unknown-linux-musleabihf ZIG_TRIPLE=arm-linux-musleabihf
      ZIG_CPU=generic+v7a+vfp3-d32+thumb2-neon GNU_HOST=arm-linux-musleabihf ;;
    # ramips mt7621 (mipsel_24kc): MIPS32r2, soft float like OpenWrt's and Rust's target.
    mipsel|mipsel-unknown-linux-musl)
      RUST_TARGET=mipsel-unknown-linux-musl ZIG_TRIPLE=mipsel-linux-musleabi ZIG_CPU=mips32r2
      GNU_HOST=mipsel-linux-musl ;;
    *) echo "zig: unknown target '$1' (x86_64, aarch64, armv7, mipsel or their Rust names)" >&2
       return 2 ;;
  esac
}

zig_wrappers() {
  ZIG_CC=$ZIG_DIR/bin/$RUST_TARGET-cc
  ZIG_AR=$ZIG_DIR/bin/$RUST_TARGET-ar
  # cc-rs adds --target=<rust triple> (zig has its own names) and rustc asks for libgcc_s
  # (zig links its own libunwind): drop both.
  cat > "$ZIG_CC" <<WRAP
#!/bin/sh
for a do
  shift
  case \$a in
    --target=*|-lgcc_s) continue ;;
  esac
  set -- "\$@" "\$a"
done
exec "$ZIG_DIR/bin/zig" cc -target $ZIG_TRIPLE -mcpu=$ZIG_CPU "\$@"
WRAP
  printf '#!/bin/sh\nexec "%s/bin/zig" ar "$@"\n' "$ZIG_DIR" > "$ZIG_AR"
  chmod +x "$ZIG_CC" "$ZIG_AR"
}

zig_cargo_env() {
  local t=${RUST_TARGET//-/_}
  local up=${t^^}
  export "CC_$t=$ZIG_CC" "AR_$t=$ZIG_AR" "CARGO_TARGET_${up}_LINKER=$ZIG_CC"
}
