#!/bin/sh
# The desktop guest's session (run by examples/guest/desktop-init.sh inside the host's root with
# the guest's layers and a tmpfs on top). Everything here is Debian's: udev finds and tags the
# devices (it loads virtio-gpu and virtio-input by their modalias), weston runs on the
# virtio-gpu DRM device with its pixman renderer and desktop shell, libinput reads the
# virtio-input devices, and weston-terminal opens in it. Progress lines start with
# "guestfb-desktop:" on the console (ttyS0); a shell in the terminal can write to /dev/ttyS0 too.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root SHELL=/bin/bash LANG=C.UTF-8
say() { echo "guestfb-desktop: $* at $(cut -d' ' -f1 /proc/uptime) s"; }

say "session starts ($(uname -r))"
# udev's rules tag input devices (ID_INPUT_*) for libinput and load drivers by modalias.
/lib/systemd/systemd-udevd --daemon --resolve-names=never || exit 10
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=180 || say "udevadm settle timed out"
say "udev settled"
tries=0
while [ ! -e /dev/dri/card0 ] && [ $tries -lt 300 ]; do
  sleep 0.2
  tries=$((tries + 1))
done
[ -e /dev/dri/card0 ] || {
  say "no /dev/dri/card0"
  exit 11
}
for node in /dev/input/event*; do
  [ -e "$node" ] && say "input $node: $(cat "/sys/class/input/${node#/dev/input/}/device/name")"
done

export XDG_RUNTIME_DIR=/run/user/0
mkdir -p -m 0700 $XDG_RUNTIME_DIR
cat >/etc/guestfb/weston.ini <<'EOF'
[core]
idle-time=0
require-input=false

[shell]
background-color=0xff204a87
panel-color=0xff2e3436
panel-position=top
locking=false
animation=none
close-animation=none
startup-animation=none
focus-animation=none

[terminal]
font-size=16
EOF
# As root without logind weston takes the VT itself (its "direct" launcher).
weston --backend=drm-backend.so --use-pixman --tty=1 --config=/etc/guestfb/weston.ini \
  --socket=wayland-1 --log=/run/weston.log &
weston=$!
tries=0
while [ ! -S $XDG_RUNTIME_DIR/wayland-1 ] && [ $tries -lt 600 ]; do
  kill -0 $weston 2>/dev/null || break
  sleep 0.2
  tries=$((tries + 1))
done
if [ ! -S $XDG_RUNTIME_DIR/wayland-1 ]; then
  say "weston did not start; its log:"
  cat /run/weston.log
  exit 12
fi
say "weston is up"
WAYLAND_DISPLAY=wayland-1 weston-terminal &
wait $weston
status=$?
say "weston exited with status $status; its log:"
tail -n 40 /run/weston.log
exit $status
