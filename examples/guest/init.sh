#!/bin/busybox sh
# /init of the guestfb test guest (busybox initramfs, Debian 6.1 kernel).
# 1. mounts proc/sys/devtmpfs, 2. insmods the modules listed in /etc/guestfb/modules in order
# (dependencies first), passing "module.param=value" words of the kernel command line to them
# like modprobe would, 3. waits for /dev/dri/card0, 4. runs the command given base64-encoded as
# guestfb.cmd= on the kernel command line (default: the demo), 5. prints
# "GUESTFB-EXIT <status>" on the console, waits for the console UART to drain and powers off.
#
# The demo (default command): the kernel's fbcon shows the boot log on every output; then
# drawpattern takes the last output (the only one with a single scanout) and animates the test
# pattern forever, so with two or more scanouts the console text stays visible on the others.
# guestfb.mode=WxH on the command line is passed to drawpattern as --mode.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox mount -t proc proc /proc
read -r uptime _ </proc/uptime
echo "guestfb-init: started at $uptime s"
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read -r uptime _ </proc/uptime
echo "guestfb-init: up at $uptime s"

# No subshells or pipes until the DRM device is up: under TCG, and more so with QEMU itself
# under TCG, each fork costs a noticeable slice of the boot (the module loop used to fork a few
# hundred times).
read -r cmdline </proc/cmdline
set -f # the command line is split into words, never globbed
while read -r module; do
  owner=${module//-/_}
  params=""
  for word in $cmdline; do
    # Module parameters on the command line use either - or _ in the module name.
    key=${word%%=*}
    prefix=${key%%.*}
    if [ "$key" != "$word" ] && [ "$prefix" != "$key" ] && [ "${prefix//-/_}" = "$owner" ]; then
      params="$params ${word#*.}"
    fi
  done
  # shellcheck disable=SC2086 # params is a word list on purpose
  insmod "/lib/modules/$module.ko" $params || echo "guestfb-init: insmod $module failed"
done </etc/guestfb/modules
set +f

# Wait for the DRM device only when there is a virtio-gpu (PCI 1af4:1050) to wait for.
tries=100
if grep -qs 0x1050 /sys/bus/pci/devices/*/device; then tries=0; fi
while [ ! -e /dev/dri/card0 ] && [ $tries -lt 100 ]; do
  sleep 0.1
  tries=$((tries + 1))
done
if [ -e /dev/dri/card0 ]; then
  read -r uptime _ </proc/uptime
  echo "guestfb-init: /dev/dri/card0 ready at $uptime s"
else
  echo "guestfb-init: no /dev/dri/card0"
fi
if [ -e /dev/tty0 ]; then
  echo "guestfb test guest: $(uname -r), $(cat /sys/class/drm/card0-*/modes 2>/dev/null | head -1)" >/dev/tty0
fi

command="drawpattern --output last --frames 0"
for word in $cmdline; do
  case "$word" in
    guestfb.mode=*) command="$command --mode ${word#guestfb.mode=}" ;;
  esac
done
for word in $cmdline; do
  case "$word" in
    guestfb.cmd=*) command=$(echo "${word#guestfb.cmd=}" | base64 -d) ;;
  esac
done
echo "guestfb-init: running: $command"
sh -c "$command"
status=$?
echo "GUESTFB-EXIT $status"
# The UART still holds the last lines: let them out before the power goes.
ttydrain /dev/console
poweroff -f
