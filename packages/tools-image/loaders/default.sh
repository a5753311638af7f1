#!/eve/bin/sh
# The loader of the built-in runtime "default": turns the task's EVE_TASK_* environment into
# qemu-system-x86_64's command line and execs it, so the task's anchor (its PID) is qemu.
# The contract it reads is in docs/contract.md ("Runtimes"). The app's process.args arrive as this script's
# arguments and go to qemu after the options below, so an app can add devices or override one.
#
#   EVE_TASK_UUID, EVE_TASK_MEMORY_MIB, EVE_TASK_VCPUS    -name, -m, -smp
#   EVE_TASK_ACCEL                                        -accel kvm | tcg
#   EVE_TASK_QMP_SOCKET                                   -qmp unix:<path>,server=on,wait=off
#   artifacts kernel, initrd; EVE_TASK_CMDLINE            -kernel, -initrd, -append
#   artifacts disk0, disk1, ... with a format each        -drive ...,if=virtio (read-only when
#     (EVE_TASK_ARTIFACT_FORMATS: disk0=qcow2,...)          the artifact's mount is read-only)
#   EVE_TASK_NICS: <tap>=<mac>,...                        -netdev tap + virtio-net-pci per NIC
# The serial console is stdout, which the node makes the task's log.
set -euf # no globbing: lists below are split on commas or spaces only

die() {
  echo "eve-tasks loader (default): $*" >&2
  exit 64
}

need() {
  eval "v=\${$1:-}"
  [ -n "$v" ] || die "$1 is not set: this loader runs as an eve-tasks runtime task"
}
for v in EVE_TASK_UUID EVE_TASK_MEMORY_MIB EVE_TASK_VCPUS EVE_TASK_ACCEL; do need "$v"; done

case $EVE_TASK_ACCEL in
  kvm | tcg) ;;
  *) die "EVE_TASK_ACCEL must be kvm or tcg, not '$EVE_TASK_ACCEL'" ;;
esac

A=/eve/artifacts
app_args=$#
set -- "$@" -name "guest=$EVE_TASK_UUID,debug-threads=on" -m "$EVE_TASK_MEMORY_MIB" \
  -smp "$EVE_TASK_VCPUS" -accel "$EVE_TASK_ACCEL" -nodefaults -no-user-config \
  -display none -serial stdio
if [ -n "${EVE_TASK_QMP_SOCKET:-}" ]; then
  set -- "$@" -qmp "unix:$EVE_TASK_QMP_SOCKET,server=on,wait=off"
fi

has_artifact() {
  case ",${EVE_TASK_ARTIFACTS:-}," in *",$1,"*) return 0 ;; esac
  return 1
}

booted=no
if has_artifact kernel; then
  set -- "$@" -kernel "$A/kernel"
  booted=yes
  if has_artifact initrd; then set -- "$@" -initrd "$A/initrd"; fi
  if [ -n "${EVE_TASK_CMDLINE:-}" ]; then set -- "$@" -append "$EVE_TASK_CMDLINE"; fi
else
  has_artifact initrd && die "artifact initrd needs artifact kernel"
  [ -n "${EVE_TASK_CMDLINE:-}" ] && die "EVE_TASK_CMDLINE needs artifact kernel"
fi

# Disks in order: disk0, disk1, ... Each needs its format: qemu's probing of formats is unsafe.
n=0
while has_artifact "disk$n"; do
  f=
  old_ifs=$IFS
  IFS=,
  for kv in ${EVE_TASK_ARTIFACT_FORMATS:-}; do
    [ "${kv%%=*}" = "disk$n" ] && f=${kv#*=}
  done
  IFS=$old_ifs
  case $f in
    raw | qcow2) ;;
    "") die "artifact disk$n has no format: give it \"format\": \"raw\" or \"qcow2\"" ;;
    *) die "artifact disk$n has format '$f': this runtime takes raw or qcow2" ;;
  esac
  ro=on
  [ -w "$A/disk$n" ] && ro=off
  set -- "$@" -drive "file=$A/disk$n,format=$f,if=virtio,readonly=$ro"
  booted=yes
  n=$((n + 1))
done
[ $booted = yes ] || die "nothing to boot: give an artifact kernel or disk0"

vhost=off
[ -c /dev/vhost-net ] && vhost=on
i=0
old_ifs=$IFS
IFS=,
for nic in ${EVE_TASK_NICS:-}; do
  tap=${nic%%=*}
  mac=${nic#*=}
  set -- "$@" -netdev "tap,id=net$i,ifname=$tap,script=no,downscript=no,vhost=$vhost" \
    -device "virtio-net-pci,netdev=net$i,mac=$mac"
  i=$((i + 1))
done
IFS=$old_ifs

# The app's arguments (first in "$@") go last.
while [ "$app_args" -gt 0 ]; do
  set -- "$@" "$1"
  shift
  app_args=$((app_args - 1))
done
exec /usr/bin/qemu-system-x86_64 "$@"
