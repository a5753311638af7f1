/**
 * A task's own `/etc/resolv.conf` and `/etc/hosts`, rendered from its interfaces and written
 * under a directory the caller gives (the executor bind-mounts them into the task).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "./files.js";

/** What the task's files depend on. */
export interface TaskFilesInput {
  /** The task's hostname-ish names (display-name label, uuid). */
  readonly names: readonly string[];
  /** The task's addresses, first interface first. */
  readonly addresses: readonly string[];
  /** Name servers, in order (a local instance's gateway runs dnsmasq). */
  readonly nameservers: readonly string[];
}

/** resolv.conf: the name servers (at most 3, resolv.conf's limit) and nothing of the host's. */
export function renderResolvConf(input: TaskFilesInput): string {
  const lines = ["# eve-tasks: this task's name servers"];
  for (const ns of input.nameservers.slice(0, 3)) lines.push(`nameserver ${ns}`);
  lines.push("options edns0");
  return `${lines.join("\n")}\n`;
}

/** hosts: loopback, and the task's names on its first address. */
export function renderHosts(input: TaskFilesInput): string {
  const lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"];
  const first = input.addresses[0];
  if (first !== undefined && input.names.length > 0) lines.push(`${first}\t${input.names.join(" ")}`);
  return `${lines.join("\n")}\n`;
}

/** Paths of the files {@link writeTaskFiles} writes. */
export interface TaskFilePaths {
  readonly resolvConf: string;
  readonly hosts: string;
}

/** Writes `resolv.conf` and `hosts` into `dir` (created if needed) atomically. */
export async function writeTaskFiles(dir: string, input: TaskFilesInput): Promise<TaskFilePaths> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const paths = { resolvConf: join(dir, "resolv.conf"), hosts: join(dir, "hosts") };
  // Rebuilt at every task start: atomic, not durable.
  await writeFileAtomic(paths.resolvConf, renderResolvConf(input), 0o644, false);
  await writeFileAtomic(paths.hosts, renderHosts(input), 0o644, false);
  return paths;
}
