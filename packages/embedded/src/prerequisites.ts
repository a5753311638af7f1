import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { PrerequisiteError } from "./errors.js";
import { findExecutable, pathWithSbin } from "./executables.js";

/**
 * The commands the embedded services need; `ip`, `tc`, `nft` and `dnsmasq` build the task
 * executor's network instances and task interfaces (`@eve-tasks/network`); gcc builds the task
 * logger (the task-executor's `native/eve-task-logger.c`) and the netns helper (the network
 * package's `native/eve-netns.c`, which needs libmnl's and libnftables' headers, listed by their
 * absolute paths) the
 * first time an executor starts on the node.
 */
export const DEFAULT_PREREQUISITE_COMMANDS: readonly string[] = [
  "nats-server",
  "containerd",
  "runc",
  "containerd-shim-runc-v2",
  "ctr",
  "ip",
  "tc",
  "nft",
  "dnsmasq",
  "gcc",
  "/usr/include/libmnl/libmnl.h",
  "/usr/include/nftables/libnftables.h",
];

/** The Debian 12 packages providing {@link DEFAULT_PREREQUISITE_COMMANDS} (libc6-dev: gcc's headers). */
export const DEBIAN_PACKAGES: readonly string[] = [
  "nats-server",
  "containerd",
  "runc",
  "iproute2",
  "nftables",
  "dnsmasq-base",
  "gcc",
  "libc6-dev",
  "libmnl-dev",
  "libnftables-dev",
];

/** Which cgroup hierarchy the host has mounted. */
export interface CgroupInfo {
  /** "v1" when any v1 controller hierarchy is mounted (controllers live there), "v2" when only the unified hierarchy is, else "none". */
  version: "v1" | "v2" | "none";
  /** v1 with a cgroup2 mount next to it (systemd's hybrid layout); the controllers are still v1. */
  hybrid: boolean;
  /** Controllers available (v1: mounted hierarchies; v2: cgroup.controllers). */
  controllers: readonly string[];
}

/** Result of {@link checkPrerequisites}. */
export interface PrerequisiteCheck {
  /** True when nothing is missing. */
  ok: boolean;
  /** Commands not found on PATH or in the sbin directories. */
  missing: readonly string[];
  /** Commands found, with their absolute paths. */
  found: Readonly<Record<string, string>>;
}

/** Result of {@link ensurePrerequisites}. */
export interface PrerequisiteReport extends PrerequisiteCheck {
  /** The cgroup hierarchy. */
  cgroups: CgroupInfo;
  /** Whether this process runs as root (containerd needs it). */
  root: boolean;
  /** Debian packages installed by this call (empty when nothing was missing). */
  installed: readonly string[];
}

/** Facts about the host that decide how prerequisites can be installed; injectable for tests. */
export interface HostFacts {
  isRoot: boolean;
  isDebian: boolean;
  /** Path of apt-get, if present. */
  aptGet: string | undefined;
}

/** Options of {@link ensurePrerequisites}. */
export interface EnsurePrerequisitesOptions {
  /** Where progress lines go; default console.log. */
  log?: (line: string) => void;
  /** Commands to require; default {@link DEFAULT_PREREQUISITE_COMMANDS}. */
  commands?: readonly string[];
  /** Host facts; detected by default. */
  host?: HostFacts;
  /** Runs a command (apt-get); default spawns it and logs its output. Injectable for tests. */
  runCommand?: (
    command: string,
    args: readonly string[],
    log: (line: string) => void,
    env: Readonly<Record<string, string>>,
  ) => Promise<void>;
  /** Reads the cgroup hierarchy; default {@link detectCgroups}. */
  detectCgroups?: () => CgroupInfo;
}

/**
 * Looks every command up (PATH, then /usr/sbin and the other sbin directories; an absolute path
 * is a file that must exist) and says what is missing.
 */
export function checkPrerequisites(
  commands: readonly string[] = DEFAULT_PREREQUISITE_COMMANDS,
): PrerequisiteCheck {
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const command of commands) {
    const path = command.startsWith("/")
      ? existsSync(command)
        ? command
        : undefined
      : findExecutable(command);
    if (path === undefined) missing.push(command);
    else found[command] = path;
  }
  return { ok: missing.length === 0, missing, found };
}

/** Generic mount options of a cgroup v1 mount, as opposed to controller names. */
const MOUNT_OPTIONS = new Set([
  "rw",
  "ro",
  "relatime",
  "nosuid",
  "nodev",
  "noexec",
  "noatime",
  "xattr",
  "clone_children",
  "noprefix",
]);

/** Reads /proc/mounts (and /sys/fs/cgroup/cgroup.controllers) to tell which cgroup hierarchy is mounted. */
export function detectCgroups(mountsText?: string, unifiedControllers?: string): CgroupInfo {
  const mounts = mountsText ?? readTextOr("/proc/mounts", "");
  const v1 = new Set<string>();
  let v2Mounted = false;
  for (const line of mounts.split("\n")) {
    const [, , type, options] = line.split(" ");
    if (type === "cgroup2") v2Mounted = true;
    if (type === "cgroup" && options !== undefined) {
      for (const opt of options.split(",")) {
        if (!MOUNT_OPTIONS.has(opt) && (!opt.includes("=") || opt.startsWith("name="))) v1.add(opt);
      }
    }
  }
  if (v1.size > 0) return { version: "v1", hybrid: v2Mounted, controllers: [...v1].sort() };
  if (v2Mounted) {
    const text = unifiedControllers ?? readTextOr("/sys/fs/cgroup/cgroup.controllers", "");
    return { version: "v2", hybrid: false, controllers: text.split(/\s+/).filter((c) => c !== "") };
  }
  return { version: "none", hybrid: false, controllers: [] };
}

/** Detects root, Debian (/etc/debian_version) and apt-get. */
export function detectHostFacts(): HostFacts {
  return {
    isRoot: typeof process.getuid === "function" && process.getuid() === 0,
    isDebian: existsSync("/etc/debian_version"),
    aptGet: findExecutable("apt-get"),
  };
}

/**
 * Makes sure the embedded services can run: cgroups mounted (v1 or v2), and nats-server,
 * containerd, runc, containerd-shim-runc-v2, ctr, ip, tc, nft and dnsmasq installed. When
 * something is missing on a Debian host running as root, runs `apt-get update` and `apt-get
 * install -y` {@link DEBIAN_PACKAGES} (printing what it does); otherwise throws {@link PrerequisiteError} saying
 * exactly what to install and how.
 */
export async function ensurePrerequisites(
  options: EnsurePrerequisitesOptions = {},
): Promise<PrerequisiteReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const commands = options.commands ?? DEFAULT_PREREQUISITE_COMMANDS;
  const host = options.host ?? detectHostFacts();
  const run = options.runCommand ?? runLogged;

  const cgroups = (options.detectCgroups ?? (() => detectCgroups()))();
  if (cgroups.version === "none") {
    throw new PrerequisiteError(
      "no cgroup filesystem is mounted (neither cgroup v1 hierarchies nor cgroup2 under /sys/fs/cgroup); containerd and runc need one",
      { context: { cgroups } },
    );
  }
  log(
    `cgroups: ${cgroups.version}${cgroups.hybrid ? " (hybrid: cgroup2 mounted too)" : ""}; controllers: ${cgroups.controllers.join(", ") || "none listed"}`,
  );

  const first = checkPrerequisites(commands);
  if (first.ok) return { ...first, cgroups, root: host.isRoot, installed: [] };

  const installLine = `apt-get install -y ${DEBIAN_PACKAGES.join(" ")}`;
  const missingText = first.missing.join(", ");
  if (!host.isDebian || host.aptGet === undefined) {
    throw new PrerequisiteError(
      `missing: ${missingText}. Install nats-server (2.9 or newer), containerd (1.6 or newer, with containerd-shim-runc-v2 and ctr), runc, iproute2 (ip, tc), nftables, dnsmasq, gcc (with the C library's headers) and the headers of libmnl and libnftables with your package manager. Debian 12 is the tested platform; there: ${installLine}`,
      { context: { missing: first.missing, host } },
    );
  }
  if (!host.isRoot) {
    throw new PrerequisiteError(
      `missing: ${missingText}. Run as root (then \`npm run prerequisites\` installs them) or install them yourself: sudo apt-get update && sudo ${installLine}`,
      { context: { missing: first.missing, host } },
    );
  }

  const env = { DEBIAN_FRONTEND: "noninteractive" };
  log(`missing: ${missingText}; installing Debian packages ${DEBIAN_PACKAGES.join(" ")}`);
  try {
    log(`$ DEBIAN_FRONTEND=noninteractive apt-get update`);
    await run(host.aptGet, ["update"], log, env);
    log(`$ DEBIAN_FRONTEND=noninteractive ${installLine}`);
    await run(host.aptGet, ["install", "-y", ...DEBIAN_PACKAGES], log, env);
  } catch (err) {
    throw new PrerequisiteError(
      `installing ${DEBIAN_PACKAGES.join(" ")} with apt-get failed: ${err instanceof Error ? err.message : String(err)}`,
      { context: { missing: first.missing }, cause: err },
    );
  }

  const second = checkPrerequisites(commands);
  if (!second.ok) {
    throw new PrerequisiteError(
      `still missing after ${installLine}: ${second.missing.join(", ")}; install them by hand`,
      { context: { missing: second.missing } },
    );
  }
  return { ...second, cgroups, root: host.isRoot, installed: [...DEBIAN_PACKAGES] };
}

/** Spawns a command, forwards its output line by line to `log`, rejects on a non-zero exit. */
async function runLogged(
  command: string,
  args: readonly string[],
  log: (line: string) => void,
  extraEnv: Readonly<Record<string, string>> = {},
): Promise<void> {
  const child = spawn(command, [...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PATH: pathWithSbin(process.env.PATH), ...extraEnv },
  });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => log(`  ${line}`));
  }
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(" ")} exited with ${signal ?? `code ${String(code)}`}`));
    });
  });
}

function readTextOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return fallback;
  }
}

/**
 * Debian packages the test suite needs besides the system's own: a static busybox (task root
 * filesystems), containerd's API protos (checked against `proto/`), a registry, skopeo, zstd and
 * openssl (the registry and image tests); qemu and cpio (the VM tests: the built-in tools image and
 * the guests' initramfs); qemu-user-static and the JDK (the built-in runtimes `emulators` and
 * `jvm`, built by the test set-up, and the JARs the runtime tests compile); chromium (the status
 * page's browser test, driven by playwright-core); docker.io (the test kit's nats-server in a
 * container, through testcontainers); python3 (the standard-library NATS client of
 * examples/clients). `npm start` installs none of them, except the packages of the built-in
 * runtimes (qemu-system-x86, busybox-static, qemu-user-static, openjdk-17-jdk-headless), which it
 * installs for those images.
 */
export const TEST_DEBIAN_PACKAGES: readonly string[] = [
  "busybox-static",
  "golang-github-containerd-containerd-dev",
  "docker-registry",
  "skopeo",
  "zstd",
  "openssl",
  "qemu-system-x86",
  "cpio",
  "qemu-user-static",
  "openjdk-17-jdk-headless",
  "chromium",
  "docker.io",
  "python3",
];

/** Which of `packages` dpkg does not list as installed (all of them when dpkg is missing). */
export function missingDebianPackages(packages: readonly string[]): string[] {
  return packages.filter((p) => {
    try {
      return !readFileSync("/var/lib/dpkg/status", "utf8").includes(
        `Package: ${p}\nStatus: install ok installed`,
      );
    } catch {
      return true;
    }
  });
}

/**
 * Installs the Debian `packages` that are missing, when root on Debian; otherwise throws a
 * {@link PrerequisiteError} naming them and the command that would install them. Returns what it
 * installed.
 */
export async function ensureDebianPackages(
  packages: readonly string[],
  options: { log?: (line: string) => void; host?: HostFacts } = {},
): Promise<string[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const missing = missingDebianPackages(packages);
  if (missing.length === 0) return [];
  const host = options.host ?? detectHostFacts();
  const installLine = `apt-get install -y --no-install-recommends ${missing.join(" ")}`;
  if (!host.isDebian || host.aptGet === undefined || !host.isRoot) {
    throw new PrerequisiteError(
      `missing Debian packages: ${missing.join(", ")}; install them as root: apt-get update && ${installLine}`,
      { context: { missing, host } },
    );
  }
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  log(`missing: ${missing.join(", ")}; installing them`);
  try {
    await runLogged(host.aptGet, ["update"], log, env);
    await runLogged(host.aptGet, ["install", "-y", "--no-install-recommends", ...missing], log, env);
  } catch (err) {
    throw new PrerequisiteError(
      `installing ${missing.join(" ")} with apt-get failed: ${err instanceof Error ? err.message : String(err)}`,
      { context: { missing }, cause: err },
    );
  }
  return missing;
}
