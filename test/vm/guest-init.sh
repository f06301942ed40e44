#!/bin/busybox sh
# /init of the kernel-tier initramfs (built by test/vm/initramfs.ts). It mounts the host's root
# (9p, read-only) under a tmpfs overlay, loads the requested modules with the host's modprobe,
# runs the command the host wrote into its run folder with stdout and stderr on two
# virtio-serial ports, reports "guestfb-exit <nonce> <status>" and stops QEMU.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

nonce=none
run=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    guestfb.run=*) run=${arg#guestfb.run=} ;;
    guestfb.nonce=*) nonce=${arg#guestfb.nonce=} ;;
  esac
done

power_off() {
  # isa-debug-exit: one write to port 0xf4 ends QEMU at once; poweroff is the fallback.
  printf '\000' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
  poweroff -f
  sleep 60
}

port() {
  for entry in /sys/class/virtio-ports/*; do
    if [ "$(cat "$entry/name" 2>/dev/null)" = "$1" ]; then
      echo "/dev/${entry##*/}"
      return 0
    fi
  done
  return 1
}

# Port names arrive from QEMU shortly after the device is probed.
status_port=
for _ in $(seq 50); do
  status_port=$(port guestfb.status) && break
  sleep 0.1
done

# The status line goes to the status port: a virtio-serial write reaches QEMU before write()
# returns, while console output sits in the UART's buffer and can be lost at power-off.
report() {
  echo "$*" >/dev/console
  if [ -n "$status_port" ]; then echo "$*" >"$status_port"; fi
}

fail() {
  report "guestfb-init-failed $nonce $*"
  power_off
}

[ -n "$status_port" ] || fail "no virtio-serial port guestfb.status"

[ -n "$run" ] || fail "no guestfb.run= on the kernel command line"

while read -r module; do
  insmod "/modules/$module.ko" || fail "insmod $module failed"
done </modules/order

mkdir -p /mnt/host /mnt/rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000 hostroot /mnt/host ||
  fail "mounting the host root over 9p failed"
host_run=/mnt/host$run
[ -f "$host_run/command.sh" ] || fail "$run/command.sh is not visible over 9p"

mount -t tmpfs -o mode=0755 overlay-rw /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot ||
  fail "mounting the overlay over the host root failed"

root=/newroot
mount -t proc proc $root/proc || fail "mounting /proc failed"
mount -t sysfs sysfs $root/sys || fail "mounting /sys failed"
mount -t devtmpfs devtmpfs $root/dev || fail "mounting /dev failed"
mkdir -p $root/dev/shm $root/dev/pts $root/tmp $root/run
mount -t tmpfs -o mode=1777 shm $root/dev/shm
mount -t devpts devpts $root/dev/pts
# Host paths under /tmp that the command needs (a checkout or cache there) keep their place
# over the guest's fresh /tmp: set aside before the tmpfs covers them, moved back after.
kept=0
while read -r keep; do
  [ -n "$keep" ] || continue
  kept=$((kept + 1))
  mkdir -p /mnt/keep$kept
  mount --bind "$root$keep" /mnt/keep$kept || fail "keeping $keep visible failed"
done <"$host_run/keep"
mount -t tmpfs -o mode=1777 tmp $root/tmp || fail "mounting /tmp failed"
kept=0
while read -r keep; do
  [ -n "$keep" ] || continue
  kept=$((kept + 1))
  mkdir -p "$root$keep"
  mount -o move /mnt/keep$kept "$root$keep" || fail "putting back $keep failed"
done <"$host_run/keep"
mount -t tmpfs -o mode=0755 run $root/run || fail "mounting /run failed"
mount -t debugfs debugfs $root/sys/kernel/debug 2>/dev/null
mkdir -p $root/run/guestfb/host $root/tmp/guestfb-home
# The host's root as it is (its /tmp included), read-only, for files a test wants to read.
mount --bind /mnt/host $root/run/guestfb/host
cp "$host_run/command.sh" $root/run/guestfb/command.sh || fail "copying the command failed"

kernel_release=$(cat "$host_run/kernel-release")
modules_root=$(cat "$host_run/modules-root")
while read -r module; do
  [ -n "$module" ] || continue
  [ -d "/sys/module/$(echo "$module" | tr - _)" ] && continue
  chroot $root /sbin/modprobe -d "$modules_root" -S "$kernel_release" "$module" ||
    fail "modprobe $module failed"
done <"$host_run/modules"

stdout_port=$(port guestfb.stdout) || fail "no virtio-serial port guestfb.stdout"
stderr_port=$(port guestfb.stderr) || fail "no virtio-serial port guestfb.stderr"

cd /
env -i chroot $root /bin/sh /run/guestfb/command.sh </dev/null >"$stdout_port" 2>"$stderr_port"
status=$?
report "guestfb-exit $nonce $status"
power_off
