#!/usr/bin/env bash
# Builds a tiny guest for the VM example and the VM tests into <out-dir>:
#   vmlinuz        Debian's kernel (the package linux-image-amd64 depends on; not installed)
#   initrd.img     a gzipped newc initramfs: static busybox and an /init that mounts proc, sys
#                  and devtmpfs, prints EVE-TASKS-GUEST-UP, and on the ACPI power button (QMP
#                  system_powerdown) prints EVE-TASKS-GUEST-POWERDOWN and powers off
#   vm-hello.json  an AppInstanceConfig (virtualization HVM) with the absolute paths above
#   guest.json     what the tests read: the paths, the markers, the kernel package and version
# Both are cached: the kernel while the recorded package and version (kernel.version) still
# match the apt index, the initrd while the hash of its inputs (initrd.inputs) is unchanged.
# Concurrent runs on the same <out-dir> are serialized with flock.
#
# Usage: make-guest.sh <out-dir>      (root on Debian 12; packages busybox-static and cpio)
set -euo pipefail
umask 022

readonly MARKER="EVE-TASKS-GUEST-UP"
readonly POWERDOWN_MARKER="EVE-TASKS-GUEST-POWERDOWN"
readonly META_PACKAGE="linux-image-amd64"
readonly BUSYBOX="/bin/busybox"
# Loaded in this order inside the guest: evdev gives acpid /dev/input/event*, button the power
# button (both are modules in Debian's kernel: CONFIG_INPUT_EVDEV=m, CONFIG_ACPI_BUTTON=m).
readonly MODULES=(kernel/drivers/input/evdev.ko kernel/drivers/acpi/button.ko)
readonly APPLETS=(sh mount insmod acpid poweroff sync sleep cat readlink)
readonly APP_UUID="3c5e7a90-4b1d-4f2e-9a6c-8d0e1f2a3b4c"
readonly CMDLINE="console=ttyS0 panic=-1 quiet"

die() {
  printf 'make-guest: error: %s\n' "$*" >&2
  exit 1
}
say() { printf 'make-guest: %s\n' "$*"; }

[[ $# -eq 1 && -n $1 && $1 != -* ]] || die "usage: $0 <out-dir>"
[[ $EUID -eq 0 ]] || die "must run as root (apt-get download, dpkg-deb -x and cpio -R 0:0 need it)"
for cmd in apt-get apt-cache dpkg-deb cpio gzip flock sha256sum realpath; do
  command -v "$cmd" >/dev/null || die "'$cmd' not found (Debian 12 with apt; for cpio: apt-get install cpio)"
done
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found: apt-get install busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked; the guest needs a static one: apt-get install busybox-static"
fi

mkdir -p -- "$1" || die "cannot create $1"
OUT="$(realpath -- "$1")"
readonly OUT
case $OUT in
  *[\"\\]* | *[[:cntrl:]]*) die "out-dir $OUT must not contain quotes, backslashes or control characters" ;;
esac

exec 9>"$OUT/.lock"
flock -w 900 9 || die "timed out waiting for the lock $OUT/.lock (another make-guest.sh on $OUT?)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/make-guest.XXXXXX")"
readonly TMP
trap 'rm -rf -- "$TMP"' EXIT

# ---- the kernel -------------------------------------------------------------------------------

INDEX_REFRESHED=0
refresh_index() {
  [[ $INDEX_REFRESHED -eq 0 ]] || return 1
  INDEX_REFRESHED=1
  say "apt index missing or stale: running apt-get update"
  if ! apt-get -q -o DPkg::Lock::Timeout=120 update >&2; then
    say "warning: apt-get update failed"
    return 1
  fi
}

KPKG="" KVER=""
# Sets KPKG and KVER: the package the candidate linux-image-amd64 depends on, and its version
# (the meta package pins it: "Depends: linux-image-6.1.0-NN-amd64 (= V)"; else apt's candidate).
resolve_kernel() {
  local dep
  dep="$(apt-cache show --no-all-versions "$META_PACKAGE" 2>/dev/null |
    sed -n 's/^Depends:.*\(linux-image-[^ ,|]*\)\( (= \([^)]*\))\)\{0,1\}.*/\1 \3/p' | head -n 1)"
  KPKG="${dep%% *}" KVER="${dep#* }"
  [[ -n $KPKG ]] || return 1
  if [[ -z $KVER ]]; then
    KVER="$(apt-cache policy "$KPKG" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')"
  fi
  [[ -n $KVER && $KVER != "(none)" ]]
}

download_kernel() {
  rm -rf -- "$TMP/deb" && mkdir -p "$TMP/deb"
  (cd "$TMP/deb" && apt-get -q download -o APT::Sandbox::User=root "$KPKG=$KVER" >&2)
}

kernel_modules_cached() {
  local m
  for m in "${MODULES[@]}"; do [[ -s $OUT/modules/$(basename "$m") ]] || return 1; done
}

if resolve_kernel || { refresh_index && resolve_kernel; }; then
  KERNEL_ID="$KPKG $KVER"
elif [[ -s $OUT/vmlinuz && -s $OUT/kernel.version ]] && kernel_modules_cached; then
  # Offline or no index, but a kernel was fetched before: keep using it.
  KERNEL_ID="$(cat "$OUT/kernel.version")"
  KPKG="${KERNEL_ID%% *}" KVER="${KERNEL_ID#* }"
  say "warning: apt cannot tell the current kernel package; keeping the cached $KERNEL_ID"
else
  die "apt knows no '$META_PACKAGE', even after apt-get update (no route to the Debian mirror? no Debian main repository in /etc/apt/sources.list*?)"
fi

kernel_cached() {
  [[ -s $OUT/vmlinuz && -f $OUT/kernel.version ]] || return 1
  [[ "$(cat "$OUT/kernel.version")" == "$KERNEL_ID" ]] || return 1
  kernel_modules_cached
}

# Copies module $1 (relative to lib/modules/<release>/) from the tree $2 to $3, uncompressed.
copy_module() {
  local src="$2/$1"
  if [[ -f $src ]]; then
    cp -- "$src" "$3"
  elif [[ -f $src.xz ]]; then
    xz -dc -- "$src.xz" >"$3"
  elif [[ -f $src.zst ]]; then
    command -v zstd >/dev/null || die "$1 is zstd-compressed: apt-get install zstd"
    zstd -qdc -- "$src.zst" >"$3"
  else
    die "the kernel package has no $1 (nor .xz, .zst)"
  fi
}

if kernel_cached; then
  say "kernel: cached $KERNEL_ID"
else
  started=$SECONDS
  say "kernel: downloading $KERNEL_ID"
  if ! download_kernel; then
    refresh_index || die "apt-get download $KPKG=$KVER failed"
    resolve_kernel || die "apt knows no '$META_PACKAGE' after apt-get update"
    KERNEL_ID="$KPKG $KVER"
    say "kernel: downloading $KERNEL_ID"
    download_kernel || die "apt-get download $KPKG=$KVER failed after apt-get update"
  fi
  debs=("$TMP"/deb/*.deb)
  [[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || die "apt-get download left no single .deb in $TMP/deb"
  dpkg-deb -x "${debs[0]}" "$TMP/x" || die "dpkg-deb -x ${debs[0]} failed"
  kernels=("$TMP"/x/boot/vmlinuz-*)
  [[ ${#kernels[@]} -eq 1 && -f ${kernels[0]} ]] || die "$KPKG holds no single boot/vmlinuz-*"
  release="${kernels[0]##*/vmlinuz-}"
  [[ -d $TMP/x/lib/modules/$release ]] || die "$KPKG has no lib/modules/$release"
  # kernel.version goes last: a half-written cache never looks complete.
  rm -f -- "$OUT/kernel.version"
  mkdir -p "$OUT/modules"
  for m in "${MODULES[@]}"; do
    copy_module "$m" "$TMP/x/lib/modules/$release" "$OUT/modules/.$(basename "$m").tmp"
    mv -f -- "$OUT/modules/.$(basename "$m").tmp" "$OUT/modules/$(basename "$m")"
  done
  cp -- "${kernels[0]}" "$OUT/.vmlinuz.tmp"
  mv -f -- "$OUT/.vmlinuz.tmp" "$OUT/vmlinuz"
  printf '%s\n' "$KERNEL_ID" >"$OUT/.kernel.version.tmp"
  mv -f -- "$OUT/.kernel.version.tmp" "$OUT/kernel.version"
  rm -rf -- "$TMP/deb" "$TMP/x"
  say "kernel: downloaded and extracted in $((SECONDS - started)) s"
fi

# ---- the initramfs ----------------------------------------------------------------------------

write_init() {
  # Runs as PID 1 under busybox sh. It must never exit (the kernel would panic).
  cat <<EOF
#!/bin/sh
# /init of the eve-tasks test guest (built by examples/vm/make-guest.sh).
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

# Whether process \$1 has an input event device open.
has_event_device() {
  for fd in /proc/"\$1"/fd/*; do
    case "\$(readlink "\$fd")" in /dev/input/event*) return 0 ;; esac
  done
  return 1
}

# The ACPI power button: evdev + button, and acpid running /etc/acpi/PWRF/00000080 on it;
# unless the command line holds eve_ignore_powerdown (a guest that ignores the button).
button=""
ignore=""
case " \$(cat /proc/cmdline) " in *" eve_ignore_powerdown "*) ignore=yes ;; esac
if [ -z "\$ignore" ] && insmod /lib/modules/evdev.ko && insmod /lib/modules/button.ko; then
  i=0
  while [ \$i -lt 50 ] && [ -z "\$button" ]; do
    for n in /sys/class/input/event*/device/name; do
      if [ -r "\$n" ] && [ "\$(cat "\$n")" = "Power Button" ]; then button=yes; fi
    done
    [ -n "\$button" ] || sleep 0.1
    i=\$((i + 1))
  done
fi
if [ -n "\$button" ]; then
  acpid -f -c /etc/acpi -l /dev/null -p /run/acpid.pid &
  acpid_pid=\$!
  # Report the guest up only once acpid has the event devices open: a powerdown sent right
  # after the marker must not be lost.
  i=0
  while [ \$i -lt 50 ] && ! has_event_device \$acpid_pid; do
    sleep 0.1
    i=\$((i + 1))
  done
else
  echo "eve-tasks-guest: no ACPI power button; system_powerdown will be ignored"
fi

echo "$MARKER"
while true; do sleep 3600; done
EOF
}

write_power_action() {
  cat <<EOF
#!/bin/sh
# Run by acpid on the ACPI power button.
echo "$POWERDOWN_MARKER" >/dev/console
sync
poweroff -f
EOF
}

# Everything the initrd is made of; it is rebuilt only when this hash changes.
INPUTS_HASH="$(
  {
    sha256sum -- "${BASH_SOURCE[0]}" "$BUSYBOX" "$OUT/kernel.version" "$OUT"/modules/*.ko |
      awk '{ print $1 }'
    printf '%s\n' "${APPLETS[@]}"
  } | sha256sum | awk '{ print $1 }'
)"

if [[ -s $OUT/initrd.img && -f $OUT/initrd.inputs && "$(cat "$OUT/initrd.inputs")" == "$INPUTS_HASH" ]]; then
  say "initrd: cached (inputs $INPUTS_HASH)"
else
  started=$SECONDS
  root="$TMP/initrd"
  mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,lib/modules,etc/acpi/PWRF}
  cp -- "$BUSYBOX" "$root/bin/busybox"
  chmod 0755 "$root/bin/busybox"
  for applet in "${APPLETS[@]}"; do ln -s busybox "$root/bin/$applet"; done
  cp -- "$OUT"/modules/*.ko "$root/lib/modules/"
  chmod 0644 "$root"/lib/modules/*.ko
  write_init >"$root/init"
  write_power_action >"$root/etc/acpi/PWRF/00000080"
  chmod 0755 "$root/init" "$root/etc/acpi/PWRF/00000080"
  # Fixed order, owners and times: the same inputs give the same bytes.
  find "$root" -exec touch -h -d @0 {} +
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >"$OUT/.initrd.img.tmp" ||
    die "building the initramfs failed"
  rm -f -- "$OUT/initrd.inputs"
  mv -f -- "$OUT/.initrd.img.tmp" "$OUT/initrd.img"
  printf '%s\n' "$INPUTS_HASH" >"$OUT/.initrd.inputs.tmp"
  mv -f -- "$OUT/.initrd.inputs.tmp" "$OUT/initrd.inputs"
  rm -rf -- "$root"
  say "initrd: built in $((SECONDS - started)) s (inputs $INPUTS_HASH)"
fi

# ---- the example app --------------------------------------------------------------------------

cat >"$OUT/.vm-hello.json.tmp" <<EOF
{
  "schemaVersion": 1,
  "uuid": "$APP_UUID",
  "version": "1",
  "displayName": "vm-hello",
  "activate": true,
  "virtualization": "HVM",
  "resources": { "memoryMiB": 128, "vcpus": 1 },
  "vm": {
    "kernel": "$OUT/vmlinuz",
    "initrd": "$OUT/initrd.img",
    "cmdline": "$CMDLINE",
    "accel": "auto"
  },
  "restartPolicy": { "mode": "never" },
  "stopTimeoutMs": 20000
}
EOF
mv -f -- "$OUT/.vm-hello.json.tmp" "$OUT/vm-hello.json"

cat >"$OUT/.guest.json.tmp" <<EOF
{
  "kernelPath": "$OUT/vmlinuz",
  "initrdPath": "$OUT/initrd.img",
  "cmdline": "$CMDLINE",
  "marker": "$MARKER",
  "powerdownMarker": "$POWERDOWN_MARKER",
  "powerdown": true,
  "kernelPackage": "$KPKG",
  "kernelVersion": "$KVER"
}
EOF
mv -f -- "$OUT/.guest.json.tmp" "$OUT/guest.json"

say "kernel:  $OUT/vmlinuz ($KERNEL_ID)"
say "initrd:  $OUT/initrd.img"
say "app:     $OUT/vm-hello.json"
