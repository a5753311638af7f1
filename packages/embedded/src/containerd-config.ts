/** Paths and settings of a private containerd's config.toml. */
export interface ContainerdConfigPaths {
  /** Persistent data (content, metadata, snapshots). */
  root: string;
  /** Ephemeral state (bundles, shim state). */
  state: string;
  /** Temporary directory for mounts and unpacking. */
  temp: string;
  /** gRPC unix socket. */
  grpcAddress: string;
  /** ttrpc unix socket (shims publish events here). */
  ttrpcAddress: string;
  /** Log level; default "info". */
  logLevel?: string;
}

/**
 * Plugins a private containerd must not load: the CRI plugin (CNI networking, a streaming
 * server, host-wide iptables and netns), `opt` (writes /opt/containerd), the restart monitor
 * (restarts containers behind the executor's back), tracing exporters, and snapshotters that
 * probe host filesystems or block devices.
 */
export const DISABLED_CONTAINERD_PLUGINS: readonly string[] = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.restart",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
];

/** A TOML basic string; JSON string escapes are valid TOML escapes. */
function tomlString(value: string): string {
  return JSON.stringify(value);
}

/**
 * Renders a version-2 containerd config.toml whose root, state, temp dir and both sockets are
 * private, with no TCP listener (gRPC TCP, debug, metrics) and the plugins in
 * {@link DISABLED_CONTAINERD_PLUGINS} disabled, so it can run next to another containerd.
 */
export function renderContainerdConfig(paths: ContainerdConfigPaths): string {
  const disabled = DISABLED_CONTAINERD_PLUGINS.map(tomlString).join(", ");
  return [
    "# Written by @eve-tasks/embedded: a private containerd (own root, state and sockets; no CRI, no TCP).",
    "version = 2",
    `root = ${tomlString(paths.root)}`,
    `state = ${tomlString(paths.state)}`,
    `temp = ${tomlString(paths.temp)}`,
    `disabled_plugins = [${disabled}]`,
    "required_plugins = []",
    "imports = []",
    "oom_score = 0",
    "",
    "[grpc]",
    `  address = ${tomlString(paths.grpcAddress)}`,
    '  tcp_address = ""',
    "  uid = 0",
    "  gid = 0",
    "",
    "[ttrpc]",
    `  address = ${tomlString(paths.ttrpcAddress)}`,
    "  uid = 0",
    "  gid = 0",
    "",
    "[debug]",
    '  address = ""',
    `  level = ${tomlString(paths.logLevel ?? "info")}`,
    "",
    "[metrics]",
    '  address = ""',
    "",
    "[cgroup]",
    '  path = ""',
    "",
  ].join("\n");
}
