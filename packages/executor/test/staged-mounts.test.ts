// Staging with real mounts (no containerd): what was checked is what gets mounted, only while
// Tasks.Create runs, privately; a crash's leftovers are swept; a task's directory is removed
// without deleting through a mount; the node's directories get their modes.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  NodeFactError,
  ensureTasksDir,
  loadNodeFacts,
  makeTaskDirs,
  mountsBelow,
  removeTaskDir,
  stagingPath,
  sweepStagedMounts,
  withStagedMounts,
} from "@eve-tasks/executor";
import type { StagedMount } from "@eve-tasks/executor";

const execFileAsync = promisify(execFile);
const findmnt = async (target: string, column: string) =>
  (await execFileAsync("findmnt", ["-n", "-o", column, "--mountpoint", target])).stdout.trim();

describe("staged mounts", () => {
  let dir: string;
  let volumes: string;
  const mounted: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "eve-staging-"));
    volumes = join(dir, "volumes");
    await mkdir(join(volumes, "data", "sub"), { recursive: true });
    await writeFile(join(volumes, "data", "top"), "top");
    await execFileAsync("mount", [
      "-t",
      "tmpfs",
      "-o",
      "size=1m",
      "eve-test-sub",
      join(volumes, "data", "sub"),
    ]);
    mounted.push(join(volumes, "data", "sub"));
    await writeFile(join(volumes, "data", "sub", "inner"), "inner");
    await writeFile(join(volumes, "kernel"), "a kernel");
  });
  afterAll(async () => {
    for (const m of [...(await mountsBelow(dir)), ...mounted]) {
      await execFileAsync("umount", ["--lazy", m]).catch(() => undefined);
    }
    if ((await mountsBelow(dir)).length === 0) await rm(dir, { recursive: true, force: true });
  });

  const task = async (name: string) => {
    const taskDir = join(dir, "data", "tasks", name);
    await makeTaskDirs({ taskDir, dirs: [] });
    return taskDir;
  };

  it("mounts the checked paths, recursively or alone, privately, only while create runs", async () => {
    const taskDir = await task("a");
    const staged: StagedMount[] = [
      { what: "root volume", source: join(volumes, "data"), via: "shim", recursive: false, directory: true },
      {
        what: "volume /data",
        source: join(volumes, "data"),
        via: "staging",
        target: stagingPath(taskDir, "volume-0"),
        recursive: true,
        directory: false,
      },
      {
        what: "volume /k",
        source: join(volumes, "kernel"),
        via: "staging",
        target: stagingPath(taskDir, "volume-1"),
        recursive: true,
        directory: false,
      },
    ];
    const rootfs = [
      { type: "bind", source: join(volumes, "data"), options: ["bind", "rw"] },
      { type: "tmpfs", source: "tmpfs", options: [] },
    ];
    // As the shim does with the rootfs mounts it is given (here in the test's own dir).
    const shimRoot = join(dir, "shim-root");
    await mkdir(shimRoot);
    const seen = await withStagedMounts({ taskDir, staged, rootfs }, async (given) => {
      await execFileAsync("mount", ["--bind", "--no-canonicalize", given[0]!.source, shimRoot]);
      try {
        return {
          given: given.map((m) => m.source),
          root: await readFile(join(shimRoot, "top"), "utf8"),
          rootSub: existsSync(join(shimRoot, "sub", "inner")),
          volume: await readFile(join(stagingPath(taskDir, "volume-0"), "sub", "inner"), "utf8"),
          file: await readFile(stagingPath(taskDir, "volume-1"), "utf8"),
          dirType: await findmnt(join(taskDir, "mounts"), "FSTYPE"),
          propagation: await findmnt(stagingPath(taskDir, "volume-0"), "PROPAGATION"),
          subPropagation: await findmnt(join(stagingPath(taskDir, "volume-0"), "sub"), "PROPAGATION"),
          dirMode: ((await stat(join(taskDir, "mounts"))).mode & 0o777).toString(8),
        };
      } finally {
        await execFileAsync("umount", [shimRoot]);
      }
    });
    expect(seen).toEqual({
      given: [expect.stringMatching(new RegExp(`^/proc/${process.pid}/fd/\\d+$`)), "tmpfs"],
      root: "top",
      rootSub: false,
      volume: "inner",
      file: "a kernel",
      dirType: "tmpfs",
      propagation: "private",
      subPropagation: "private",
      dirMode: "700",
    });
    // Detached in the background once create has returned.
    await expect.poll(() => mountsBelow(taskDir), { timeout: 10_000 }).toEqual([]);
    await expect.poll(() => existsSync(join(taskDir, "mounts")), { timeout: 10_000 }).toBe(false);
    // The host's own submount is untouched by the detach of its staged copy.
    expect(await mountsBelow(join(volumes, "data"))).toEqual([join(volumes, "data", "sub")]);
  });

  it("refuses a path changed since its check, and a final symlink, leaving nothing mounted", async () => {
    const taskDir = await task("b");
    await mkdir(join(volumes, "own", "a", "vol"), { recursive: true });
    await mkdir(join(dir, "secret", "vol"), { recursive: true });
    const checked = join(volumes, "own", "a", "vol");
    await rename(join(volumes, "own", "a"), join(volumes, "own", "a.orig"));
    await symlink(join(dir, "secret"), join(volumes, "own", "a"));
    const m: StagedMount = {
      what: "volume /data",
      source: checked,
      via: "staging",
      target: stagingPath(taskDir, "volume-0"),
      recursive: true,
      directory: false,
    };
    let created = false;
    const err = await withStagedMounts({ taskDir, staged: [m], rootfs: [] }, () =>
      Promise.resolve((created = true)),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeFactError);
    expect((err as Error).message).toBe(
      `volume /data ${checked} changed between its check and its mount (it is now ${join(dir, "secret", "vol")}): not mounted`,
    );
    expect(created).toBe(false);
    await symlink(join(dir, "secret"), join(volumes, "own", "link"));
    const final = { ...m, source: join(volumes, "own", "link") };
    await expect(
      withStagedMounts({ taskDir, staged: [final], rootfs: [] }, () => Promise.resolve()),
    ).rejects.toThrow(/no longer a directory or regular file/);
    expect(await mountsBelow(taskDir)).toEqual([]);
  });

  it("detaches the staging mounts when create fails, and passes its error on", async () => {
    const taskDir = await task("c");
    const m: StagedMount = {
      what: "volume /data",
      source: join(volumes, "data"),
      via: "staging",
      target: stagingPath(taskDir, "volume-0"),
      recursive: true,
      directory: false,
    };
    await expect(
      withStagedMounts({ taskDir, staged: [m], rootfs: [] }, () => Promise.reject(new Error("runc said no"))),
    ).rejects.toThrow("runc said no");
    expect(await mountsBelow(taskDir)).toEqual([]);
  });

  it("sweeps what a crash left under any task, and removes a task's directory without deleting through a mount", async () => {
    const left = [await task("d"), await task("e")];
    for (const taskDir of left) {
      await mkdir(stagingPath(taskDir, "volume-0"), { recursive: true });
      await execFileAsync("mount", ["--rbind", join(volumes, "data"), stagingPath(taskDir, "volume-0")]);
    }
    const swept = await sweepStagedMounts(join(dir, "data"));
    expect(swept).toEqual(
      expect.arrayContaining([
        stagingPath(left[0]!, "volume-0"),
        join(stagingPath(left[1]!, "volume-0"), "sub"),
      ]),
    );
    for (const taskDir of left) expect(await mountsBelow(taskDir)).toEqual([]);
    expect(await readFile(join(volumes, "data", "top"), "utf8")).toBe("top");

    const taskDir = await task("f");
    await mkdir(join(taskDir, "stray"));
    await execFileAsync("mount", ["--bind", join(volumes, "data"), join(taskDir, "stray")]);
    await removeTaskDir(taskDir);
    expect(existsSync(taskDir)).toBe(false);
    expect(await readFile(join(volumes, "data", "top"), "utf8")).toBe("top");
    await removeTaskDir(taskDir); // idempotent
  });

  it("keeps task directories from other users: tasks/ 0711, each task's 0700, tightening old ones", async () => {
    const data = join(dir, "modes");
    await mkdir(join(data, "tasks", "old"), { recursive: true, mode: 0o755 });
    await chmod(join(data, "tasks"), 0o755);
    await ensureTasksDir(data);
    await makeTaskDirs({
      taskDir: join(data, "tasks", "old"),
      dirs: [join(data, "tasks", "old", "overlay", "upper")],
    });
    expect(((await stat(join(data, "tasks"))).mode & 0o777).toString(8)).toBe("711");
    expect(((await stat(join(data, "tasks", "old"))).mode & 0o777).toString(8)).toBe("700");
    expect(existsSync(join(data, "tasks", "old", "overlay", "upper"))).toBe(true);
  });

  it("loads the node's facts: volume roots made 0700, others warned about, devices checked, the logger built", async () => {
    const data = join(dir, "facts");
    const open = join(dir, "open-root");
    await mkdir(open, { mode: 0o755 });
    await chmod(open, 0o755);
    // The default root, made by someone else before the executor: tightened, it is the node's.
    await mkdir(join(data, "volumes"), { recursive: true, mode: 0o755 });
    await chmod(join(data, "volumes"), 0o755);
    const warnings: string[] = [];
    const base = {
      node: "local",
      dataDir: data,
      runDir: join(dir, "run"),
      volumeRoots: [join(data, "volumes"), open],
      allowHostRoot: false,
      allowDevices: ["kvm"],
      logMaxBytes: 4096,
      logFiles: 2,
      warn: (message: string) => warnings.push(message),
    };
    const facts = await loadNodeFacts(base);
    expect(((await stat(join(data, "volumes"))).mode & 0o777).toString(8)).toBe("700");
    expect(warnings).toEqual([
      `volume root ${open} can be entered by host users other than root (mode 755): a task can leave ` +
        "setuid-root files in its volumes; make it 0700",
    ]);
    expect(facts.policy).toEqual({ allowHostRoot: false, devices: ["kvm"] });
    expect(facts.taskLog.loggerPath).toMatch(/\/bin\/eve-task-logger-[0-9a-f]{16}$/);
    expect([facts.taskLog.maxBytes, facts.taskLog.files]).toEqual([4096, 2]);
    expect(((await stat(join(data, "tasks"))).mode & 0o777).toString(8)).toBe("711");
    await expect(loadNodeFacts({ ...base, allowDevices: ["gpu"] })).rejects.toThrow(
      'EVE_ALLOW_DEVICES: unknown device "gpu" (known: kvm, tun)',
    );
  });
});
