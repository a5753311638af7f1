// Fixture trees for the procfs tests: fake /proc/<pid> and cgroup directories in a temp dir.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach } from "vitest";

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir, removed after the test. */
export function fixtureDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "eve-procfs-"));
  made.push(dir);
  return dir;
}

/** Writes `files` (relative path → content) under `root`. */
export function writeTree(root: string, files: Record<string, string>): void {
  for (const [rel, text] of Object.entries(files)) {
    const file = join(root, rel);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
}

/** A /proc/<pid>/stat line with the given state and start ticks. */
export function statLine(pid: number, startTicks: number, state = "S"): string {
  return (
    `${pid} (sh) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 ${startTicks} 1000000 321 ` +
    "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
  );
}

/** A /proc/<pid>/status text. */
export function statusText(pid: number, opts: { state?: string; rssKiB?: number | null } = {}): string {
  const state = opts.state ?? "S (sleeping)";
  const rss = opts.rssKiB === undefined ? 4242 : opts.rssKiB;
  const vm =
    rss === null
      ? ""
      : `VmPeak:\t    9000 kB\nVmSize:\t    8800 kB\nVmHWM:\t    ${rss + 10} kB\nVmRSS:\t    ${rss} kB\n`;
  return (
    `Name:\tsh\nUmask:\t0022\nState:\t${state}\nTgid:\t${pid}\nNgid:\t0\nPid:\t${pid}\nPPid:\t1\n` +
    `TracerPid:\t0\n${vm}Threads:\t3\nSigQ:\t0/1000\n`
  );
}

/** A /proc/<pid>/statm text: `residentPages` resident; a zombie has all zeros. */
export function statmText(residentPages: number): string {
  return residentPages === 0 ? "0 0 0 0 0 0 0\n" : `2200 ${residentPages} 100 50 0 300 0\n`;
}
