#!/bin/busybox sh
# /init of the desktop guest (examples/qemu/desktop-image.ts; Debian 6.1 kernel). The desktop
# itself is the host's own Debian weston, not code of ours: this script only makes the host's
# root the guest's root.
# 1. loads the modules 9p and overlayfs need (listed in /etc/guestfb/modules, dependencies
#    first), 2. mounts the host's root read-only over virtio-9p (tag hostroot) and the folder of
#    the guest's layers (tag layers: a share of its own, as overlayfs refuses a layer inside
#    another), 3. stacks the layers named by guestfb.layers=NAME:NAME (the guest kernel's
#    modules, Debian's udev) over the host root with a tmpfs on top, so the guest can write
#    anywhere and the host sees nothing, 4. switches
#    to that root and runs /etc/guestfb/desktop-session.sh. Its exit status goes to the console
#    as "GUESTFB-EXIT <status>", then the guest powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "guestfb-desktop: init at $(cut -d' ' -f1 /proc/uptime) s"

fail() {
  echo "guestfb-desktop: $*"
  echo "GUESTFB-EXIT 1"
  poweroff -f
  sleep 60
}

layers=
for word in $(cat /proc/cmdline); do
  case "$word" in
    guestfb.layers=*) layers=${word#guestfb.layers=} ;;
  esac
done

for module in $(cat /etc/guestfb/modules); do
  insmod "/lib/modules/$module.ko" || fail "insmod $module failed"
done

mkdir -p /mnt/host /mnt/layers /mnt/rw /newroot
options=ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000
mount -t 9p -o $options hostroot /mnt/host || fail "mounting the host root over virtio-9p failed"
mount -t 9p -o $options layers /mnt/layers || fail "mounting the layers over virtio-9p failed"
lower=
for layer in $(echo "$layers" | tr : ' '); do
  [ -d "/mnt/layers/$layer" ] || fail "layer $layer is not in the layers share"
  lower="$lower/mnt/layers/$layer:"
done
mount -t tmpfs -o mode=0755 desktop-rw /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o "lowerdir=$lower/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work" \
  desktop /newroot || fail "mounting the overlay over the host root failed"

root=/newroot
mount -t proc proc $root/proc || fail "mounting /proc failed"
mount -t sysfs sysfs $root/sys || fail "mounting /sys failed"
mount -t devtmpfs devtmpfs $root/dev || fail "mounting /dev failed"
mkdir -p $root/dev/shm $root/dev/pts
mount -t tmpfs -o mode=1777 shm $root/dev/shm
mount -t devpts devpts $root/dev/pts
# The host's /run (its sockets, its udev database) must not leak in.
mount -t tmpfs -o mode=0755 run $root/run || fail "mounting /run failed"
mkdir -p $root/etc/guestfb $root/run/guestfb
cp /etc/guestfb/desktop-session.sh $root/etc/guestfb/desktop-session.sh
# The initramfs goes away at switch_root; power-off needs a busybox that stays.
cp /bin/busybox $root/run/guestfb/busybox

# The session runs as PID 1 of the new root (udevadm refuses to work in a chroot).
cd /
exec env -i TERM=linux switch_root $root /bin/sh -c \
  '/bin/sh /etc/guestfb/desktop-session.sh; echo "GUESTFB-EXIT $?"; exec /run/guestfb/busybox poweroff -f'
