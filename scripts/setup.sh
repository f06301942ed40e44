#!/usr/bin/env bash
# Idempotent setup: Debian packages, npm packages, native addon, TypeScript.
# Safe to run repeatedly; each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests use (the kernel and QEMU tiers fetch their own debs
# into the cache folder; see test/vm and examples/qemu).
packages=(
  pkg-config g++ make python3
  libwayland-dev wayland-protocols wayland-utils weston libdrm-dev
  qemu-system-x86 busybox-static cpio xz-utils zstd kmod
  gcc-12 libelf1 apt debian-archive-keyring
  clang-format
  # strace: the per-frame syscall count (npm run bench, test/wayland/frame-counts).
  strace
  # The libvirt e2e test starts Debian's libvirtd itself (no systemd needed) and drives it with virsh.
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  # Resize through QEMU's D-Bus display (gdbus calls SetUIInfo; tests and the demo start a private
  # dbus-daemon for it).
  libglib2.0-bin dbus-daemon
  # Libraries QEMU 10 from bookworm-backports (unpacked by examples/qemu) links against.
  libaio1 libbpf1 libcap-ng0 libcapstone4 libepoxy0 libfdt1 libfuse3-3 libgbm1 libglib2.0-0
  libgnutls30 libibverbs1 libjpeg62-turbo libnuma1 libpixman-1-0 libpmem1 libpng16-16 librdmacm1
  libsasl2-2 libseccomp2 libslirp0 libudev1 liburing2 libvdeplug2 libvirglrenderer1 libx11-6
  libzstd1
  # Libraries weston 14 and Mesa 25 from bookworm-backports (unpacked by test/vm/weston14.ts) link against.
  libcairo2 libegl1 libevdev2 libexpat1 libfontconfig1 libgles2 libinput10 libllvm15
  libpango-1.0-0 libpangocairo-1.0-0 libpciaccess0 libsensors5 libwebp7 libx11-xcb1 libxcb-dri3-0
  libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxkbcommon0 libxshmfence1
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
  echo "setup: installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm packages: reinstall when the lockfile changed since the last install.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi

bash scripts/build.sh
