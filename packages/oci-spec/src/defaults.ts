/**
 * The default Linux spec every build starts from: containerd's defaults (`oci.populateDefaultUnixSpec`)
 * minus the node-local `cgroupsPath`, plus a default `PATH`.
 */
import type { RuntimeMount, RuntimeNamespace, RuntimeSpec } from "./types.js";

/** The OCI runtime-spec version written into every spec (what runc 1.1 implements). */
export const OCI_VERSION = "1.0.2";

/** The root filesystem directory relative to the bundle; the rootfs itself comes as mounts. */
export const ROOTFS_PATH = "rootfs";

/** The `PATH` every process gets unless its env sets another one. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** containerd's default capability set (bounding, effective and permitted). */
export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
]);

/** Namespaces of every task: its own pid, ipc, uts, mount and network namespaces. */
export const DEFAULT_NAMESPACES: readonly RuntimeNamespace["type"][] = Object.freeze([
  "pid",
  "ipc",
  "uts",
  "mount",
  "network",
]);

/** /proc paths hidden from the container (containerd's list). */
export const DEFAULT_MASKED_PATHS: readonly string[] = Object.freeze([
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/sys/firmware",
  "/proc/scsi",
]);

/** /proc paths the container sees read-only (containerd's list). */
export const DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
]);

/** The open-files limit every process gets (soft and hard), as containerd sets it. */
export const DEFAULT_NOFILE_LIMIT = 1024;

/** The mounts runc needs: /proc, a tmpfs /dev with pts, shm and mqueue, and a read-only /sys. */
export function defaultMounts(): RuntimeMount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    {
      destination: "/dev",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
      destination: "/dev/pts",
      type: "devpts",
      source: "devpts",
      options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
      destination: "/dev/shm",
      type: "tmpfs",
      source: "shm",
      options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  ];
}

/**
 * A fresh default spec (a new object each call): no args yet, user 0:0, cwd `/`, env with the
 * default `PATH`, containerd's capabilities, `RLIMIT_NOFILE` 1024/1024, `noNewPrivileges`, root
 * `rootfs` read-write, the mounts of {@link defaultMounts}, new pid, ipc, uts, mount and network
 * namespaces, containerd's masked and read-only paths, and every device denied. No memory or CPU
 * limit and no `cgroupsPath` (node-local).
 */
export function defaultSpec(): RuntimeSpec {
  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [],
      env: [`PATH=${DEFAULT_PATH}`],
      cwd: "/",
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", soft: DEFAULT_NOFILE_LIMIT, hard: DEFAULT_NOFILE_LIMIT }],
      noNewPrivileges: true,
    },
    root: { path: ROOTFS_PATH, readonly: false },
    mounts: defaultMounts(),
    linux: {
      namespaces: DEFAULT_NAMESPACES.map((type) => ({ type })),
      resources: { devices: [{ allow: false, access: "rwm" }] },
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
}
