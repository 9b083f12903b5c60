#!/usr/bin/env bash
# Installs everything qwamos-build needs on Debian 12: the Debian packages
# (through apt-get, idempotent) and the npm dependencies, then compiles the
# TypeScript sources. Run it from the repository root: bash ci/setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."

# package|why: one line per Debian package the build or its tests run.
PACKAGES=(
  "make|runs the kernel build"
  "gcc|builds the kernel's host programs and the verifier for tests"
  "libc6-dev|C library headers for the host compiler"
  "bc|arithmetic in the kernel build"
  "bison|generates the kernel's Kconfig parser"
  "flex|generates the kernel's Kconfig lexer"
  "libssl-dev|kernel build host tools (sign-file, extract-cert)"
  "libelf-dev|kernel build host tools (objtool, resolve_btfids)"
  "gcc-aarch64-linux-gnu|cross-compiles the arm64 kernel and verifier"
  "libc6-dev-arm64-cross|static C library for the arm64 verifier"
  "xz-utils|unpacks the kernel source tarball"
  "dpkg|unpacks downloaded .deb files"
  "cpio|tests extract the initramfs with the reference cpio"
  "erofs-utils|makes the EROFS system image"
  "cryptsetup-bin|veritysetup checks dm-verity hash trees"
  "qemu-system-arm|boot-tests arm64 images (qemu-system-aarch64)"
  "mkbootimg|reference Android boot image writer for tests"
  "android-sdk-libsparse-utils|reference sparse image tools img2simg and simg2img"
  "fastboot|flashes phones; tests drive it against a local emulator"
  "heimdall-flash|flashes Samsung phones"
  "e2fsprogs|ext4 images for guests"
  "attr|tests set extended attributes that the EROFS image must drop"
  "binutils|tests check the verifier binaries with readelf"
  "openssl|tests cross-check key files and AVB signatures"
  "gzip|tests check the initramfs compression with gunzip"
  "linux-source-6.1|tests check the Kconfig indexer against the real kernel tree"
  "time|benchmarks read CPU time and peak memory of reference tools with GNU time"
)

missing=()
for entry in "${PACKAGES[@]}"; do
  package=${entry%%|*}
  why=${entry#*|}
  if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    echo "setup: $package is installed ($why)"
  else
    echo "setup: $package is missing ($why)"
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: not root; install the missing packages with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# The host's apt lists are needed by 'apt-get download' for the pinned
# architecture-independent inputs such as linux-source-6.1.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -q
  else
    echo "setup: apt has no package lists; run: sudo apt-get update" >&2
    exit 1
  fi
fi

echo "setup: installing npm dependencies (npm ci)"
# --ignore-scripts: no package needs an install script; pqclean ships C sources
# that the verifier build compiles itself, and its optional native addon is unused.
npm ci --no-audit --no-fund --ignore-scripts

echo "setup: compiling TypeScript (npm run build)"
npm run build

echo "setup: done; check the host with: node bin/qwamos-build.js doctor"
