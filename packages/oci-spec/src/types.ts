/**
 * TypeScript shapes of the parts of an OCI runtime spec (`config.json`, runtime-spec v1.0.2) that
 * this package writes. They are type aliases, not interfaces, so a {@link RuntimeSpec} is
 * assignable wherever a plain JSON object is expected.
 */

/** The user a process runs as: numeric IDs only (names need the rootfs's /etc/passwd). */
export type RuntimeUser = {
  uid: number;
  gid: number;
  additionalGids?: number[];
  umask?: number;
};

/** Capability sets of the process, by name (`CAP_CHOWN`, …). */
export type RuntimeCapabilities = {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
};

/** One POSIX rlimit: `RLIMIT_NOFILE` with its soft and hard values. */
export type RuntimeRlimit = { type: string; soft: number; hard: number };

/** The container's process. */
export type RuntimeProcess = {
  terminal: boolean;
  user: RuntimeUser;
  /** Program and arguments; empty in the default spec until an option sets them. */
  args: string[];
  /** `NAME=value` strings. */
  env: string[];
  /** Absolute working directory inside the container. */
  cwd: string;
  capabilities: RuntimeCapabilities;
  rlimits: RuntimeRlimit[];
  noNewPrivileges: boolean;
};

/** The root filesystem: a directory relative to the bundle (`rootfs`). */
export type RuntimeRoot = { path: string; readonly: boolean };

/** A mount inside the container. */
export type RuntimeMount = {
  /** Absolute path inside the container. */
  destination: string;
  type?: string;
  /** A host path for bind mounts; a device or pseudo-filesystem name otherwise. */
  source?: string;
  options?: string[];
};

/** Linux namespace kinds of the OCI runtime spec. */
export type NamespaceType = "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup" | "time";

/** A namespace the container gets (a new one, or the one at `path`). */
export type RuntimeNamespace = { type: NamespaceType; path?: string };

/** A device cgroup rule. */
export type RuntimeDeviceRule = {
  allow: boolean;
  type?: "a" | "b" | "c";
  major?: number;
  minor?: number;
  /** Any of `r`, `w`, `m`. */
  access?: string;
};

/** Memory limits in bytes. */
export type RuntimeMemory = { limit?: number; reservation?: number; swap?: number };

/** CFS CPU limits in microseconds. */
export type RuntimeCpu = { period?: number; quota?: number; shares?: number; cpus?: string };

/** The cgroup resources of the container. */
export type RuntimeResources = {
  memory?: RuntimeMemory;
  cpu?: RuntimeCpu;
  devices: RuntimeDeviceRule[];
};

/** The Linux-specific part of the spec. */
export type RuntimeLinux = {
  namespaces: RuntimeNamespace[];
  resources: RuntimeResources;
  maskedPaths: string[];
  readonlyPaths: string[];
  /** Node-local: set by whoever creates the container, never by a node-independent builder. */
  cgroupsPath?: string;
};

/** An OCI runtime spec as this package builds it (Linux only). */
export type RuntimeSpec = {
  ociVersion: string;
  process: RuntimeProcess;
  root: RuntimeRoot;
  hostname?: string;
  mounts: RuntimeMount[];
  linux: RuntimeLinux;
  annotations?: Record<string, string>;
};
