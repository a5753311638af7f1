// An arm64 busybox for cross-architecture tests: Debian's busybox-static:arm64, downloaded with
// apt into a cache of its own (its own package lists, no dpkg status), without adding arm64 to
// the host's dpkg architectures, and unpacked with dpkg -x. Kept between runs.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Where the arm64 busybox is cached. */
export const ARM64_BUSYBOX_CACHE =
  process.env.EVE_TEST_ARM64_CACHE ?? "/var/cache/eve-tasks/test-arm64-busybox";

/** The path of a static arm64 busybox (downloaded once per machine). */
export async function arm64Busybox(): Promise<string> {
  const d = ARM64_BUSYBOX_CACHE;
  const busybox = join(d, "x", "bin", "busybox");
  if (existsSync(busybox)) return busybox;
  await mkdir(join(d, "lists", "partial"), { recursive: true });
  await mkdir(join(d, "cache", "archives", "partial"), { recursive: true });
  const o = [
    "-o",
    "APT::Architectures::=arm64",
    "-o",
    "APT::Architecture=arm64",
    "-o",
    `Dir::State::Lists=${d}/lists`,
    "-o",
    `Dir::Cache=${d}/cache`,
    "-o",
    "Dir::State::status=/dev/null",
    "-o",
    "APT::Sandbox::User=root",
  ];
  await run("apt-get", [...o, "-q", "update"], { timeout: 300_000 });
  await run("apt-get", [...o, "-q", "download", "busybox-static:arm64"], { cwd: d, timeout: 300_000 });
  const deb = (await readdir(d)).find((f) => f.startsWith("busybox-static_") && f.endsWith("_arm64.deb"));
  if (deb === undefined) throw new Error(`apt-get download left no busybox-static arm64 .deb in ${d}`);
  await run("dpkg", ["-x", join(d, deb), join(d, "x")]);
  return busybox;
}
