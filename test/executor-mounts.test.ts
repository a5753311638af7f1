// From the attacker's side, against the real task-executor, containerd and runc: host paths are
// mounted as they were checked (a symlink swapped in between check and mount reaches nothing),
// read-only volumes are read-only all the way down, a task's directory keeps its setuid files
// from unprivileged host users, staging mounts do not outlive Tasks.Create or an executor crash,
// and deleting an app never deletes through a mount. The node's data dir is a shared mount, as
// under systemd.
import { spawn, execFile } from "node:child_process";
import { existsSync, renameSync, symlinkSync, watch } from "node:fs";
import { chmod, mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { parseMountinfo } from "@eve-tasks/procfs";
import type { AppInstanceConfigInput } from "@eve-tasks/schemas";
import { deferCleanup, makeRootfs, tempDir, uuidMaker, waitFor } from "./harness/index.js";
import { startExecutorNode } from "./executor-node.js";
import type { ExecutorNode } from "./executor-node.js";

const execFileAsync = promisify(execFile);
const newUuid = uuidMaker("e0120000");

/** Mount points at or below `dir`. */
async function mountsBelow(dir: string): Promise<string[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"))
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** Mounts a small tmpfs of this test at `dir`, detached when the test (or file) ends. */
async function tmpfs(dir: string, options = "size=4m"): Promise<void> {
  await mkdir(dir, { recursive: true });
  await execFileAsync("mount", ["-t", "tmpfs", "-o", options, "eve-test-tmpfs", dir]);
  deferCleanup(() => execFileAsync("umount", ["--lazy", dir]).catch(() => undefined));
}

/** Runs a shell command as the unprivileged host user nobody (65534). */
function asNobody(script: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", script], {
      uid: 65534,
      gid: 65534,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

describe("host paths are mounted as checked, read-only all the way down, out of unprivileged reach", () => {
  let dir: string;
  let node: ExecutorNode;
  let volumes: string;
  let rootfs: string;

  beforeAll(async () => {
    dir = await tempDir("mounts-");
    // The node's dirs are reachable by any host user up to what the executor itself protects
    // (as /var/lib is): only its own modes keep them out.
    await chmod(dir, 0o755);
    volumes = join(dir, "volumes");
    rootfs = join(volumes, "rootfs");
    await makeRootfs(rootfs);
    // The data dir on a mount with shared propagation, as / is under systemd.
    await tmpfs(join(dir, "data"), "size=64m,mode=0755");
    await execFileAsync("mount", ["--make-shared", join(dir, "data")]);
    node = await startExecutorNode(dir);
  }, 90_000);

  function app(uuid: string, over: Partial<AppInstanceConfigInput>): AppInstanceConfigInput {
    return {
      schemaVersion: 1,
      uuid,
      version: "1",
      displayName: "mounts",
      virtualization: "NOHYPER",
      resources: { memoryMiB: 32, vcpus: 1 },
      root: { volume: { path: rootfs, readOnly: false } },
      volumes: [],
      stopTimeoutMs: 2000,
      ...over,
    } as AppInstanceConfigInput;
  }

  /** The shell command of a task: `script`, then wait for SIGTERM. */
  const sh = (script: string) => ["/bin/sh", "-c", `trap 'exit 0' TERM; ${script}; sleep 3600 & wait`];

  /** The task's log once it holds `marker`. */
  const logWith = async (logPath: string, marker: string) =>
    waitFor(
      async () => {
        const text = await readFile(logPath, "utf8").catch(() => "");
        return text.includes(marker) ? text : undefined;
      },
      { timeoutMs: 15_000, message: `${logPath} never showed ${marker}` },
    );

  it("mounts what was checked: a directory swapped for a symlink to a secret after the check reaches nothing", async () => {
    const tasks = join(node.dataDir, "tasks");
    for (let attempt = 0; attempt < 3; attempt++) {
      const uuid = newUuid();
      // The attacker owns a directory under the volume roots and swaps a component of the path
      // the executor checked for a symlink to a directory elsewhere, the moment the task's
      // directory appears (after the check, before the runtime mounts).
      const own = join(volumes, `attacker-${attempt}`);
      await mkdir(join(own, "a", "vol"), { recursive: true });
      await writeFile(join(own, "a", "vol", "flag"), `benign-${uuid}\n`);
      const secret = join(dir, `secret-${attempt}`);
      await mkdir(join(secret, "vol"), { recursive: true });
      await writeFile(join(secret, "vol", "flag"), `SECRET-${uuid}\n`);
      let swapped = false;
      const watcher = watch(tasks, (_event, name) => {
        if (name !== uuid || swapped) return;
        swapped = true;
        renameSync(join(own, "a"), join(own, "a.orig"));
        symlinkSync(secret, join(own, "a"));
      });
      try {
        const config = node.build(
          app(uuid, {
            volumes: [{ path: join(own, "a", "vol"), mountPoint: "/data", readOnly: true }],
            process: { args: sh("cat /data/flag; echo read-done") },
          }),
          1,
        );
        await node.put(config);
        const s = await node.settled(uuid);
        expect(swapped).toBe(true);
        if (s.state === "FAILED") {
          expect(s.error?.message).toMatch(
            new RegExp(
              `volume /data ${own}/a/vol changed between its check and its mount \\(it is now ${secret}/vol\\)`,
            ),
          );
          expect(await node.hasContainer(uuid)).toBe(false);
        } else {
          const log = await logWith(s.logPath, "read-done");
          expect(log).toContain(`benign-${uuid}`);
        }
        const log = await readFile(s.logPath, "utf8").catch(() => "");
        expect(log).not.toContain("SECRET");
      } finally {
        watcher.close();
      }
    }
  });

  it("mounts the root volume that was checked: a symlink swapped in after the check reaches nothing", async () => {
    const uuid = newUuid();
    const own = join(volumes, "root-attacker");
    await makeRootfs(join(own, "a", "root"));
    await writeFile(join(own, "a", "root", "flag"), `benign-${uuid}\n`);
    const secret = join(dir, "root-secret");
    await makeRootfs(join(secret, "root"));
    await writeFile(join(secret, "root", "flag"), `SECRET-${uuid}\n`);
    let swapped = false;
    const watcher = watch(join(node.dataDir, "tasks"), (_event, name) => {
      if (name !== uuid || swapped) return;
      swapped = true;
      renameSync(join(own, "a"), join(own, "a.orig"));
      symlinkSync(secret, join(own, "a"));
    });
    try {
      await node.put(
        node.build(
          app(uuid, {
            root: { volume: { path: join(own, "a", "root"), readOnly: true } },
            process: { args: sh("cat /flag; echo read-done") },
          }),
          1,
        ),
      );
      const s = await node.settled(uuid);
      expect(swapped).toBe(true);
      if (s.state === "FAILED") {
        expect(s.error?.message).toContain(
          `root volume ${own}/a/root changed between its check and its mount (it is now ${secret}/root)`,
        );
      } else {
        expect(await logWith(s.logPath, "read-done")).toContain(`benign-${uuid}`);
      }
      expect(await readFile(s.logPath, "utf8").catch(() => "")).not.toContain("SECRET");
    } finally {
      watcher.close();
    }
  });

  it("mounts what was checked while an attacker keeps swapping the path back and forth", async () => {
    for (let attempt = 0; attempt < 4; attempt++) {
      const uuid = newUuid();
      const own = join(volumes, `toggler-${attempt}`);
      await mkdir(join(own, "a", "vol"), { recursive: true });
      await writeFile(join(own, "a", "vol", "flag"), `benign-${uuid}\n`);
      const secret = join(dir, `toggled-secret-${attempt}`);
      await mkdir(join(secret, "vol"), { recursive: true });
      await writeFile(join(secret, "vol", "flag"), `SECRET-${uuid}\n`);
      // A separate process, swapping as fast as it can: the directory, then a symlink to the
      // secret, then the directory again.
      const script = `
        const fs = require("node:fs");
        const [a, real, secret] = process.argv.slice(1);
        for (;;) {
          fs.renameSync(a, real);
          fs.symlinkSync(secret, a);
          fs.unlinkSync(a);
          fs.renameSync(real, a);
        }`;
      const toggler = spawn(process.execPath, ["-e", script, join(own, "a"), join(own, "a.real"), secret], {
        stdio: "ignore",
      });
      deferCleanup(() => toggler.kill("SIGKILL"));
      try {
        const config = node.build(
          app(uuid, {
            volumes: [{ path: join(own, "a", "vol"), mountPoint: "/data", readOnly: true }],
            process: { args: sh("cat /data/flag; echo read-done") },
          }),
          1,
        );
        await node.put(config);
        const s = await node.settled(uuid);
        if (s.state === "RUNNING") {
          expect(await logWith(s.logPath, "read-done")).toContain(`benign-${uuid}`);
        } else {
          expect(s.error?.message).toMatch(
            /changed between its check and its mount|is outside EVE_VOLUME_ROOTS|does not exist on this node|cannot be opened/,
          );
        }
        expect(await readFile(s.logPath, "utf8").catch(() => "")).not.toContain("SECRET");
      } finally {
        toggler.kill("SIGKILL");
      }
    }
  });

  it("makes a read-only volume read-only all the way down, its submounts included", async () => {
    const uuid = newUuid();
    const vol = join(volumes, "ro-vol");
    await tmpfs(join(vol, "sub"));
    await writeFile(join(vol, "sub", "hello"), "from-the-submount\n");
    const config = node.build(
      app(uuid, {
        volumes: [{ path: vol, mountPoint: "/data", readOnly: true }],
        process: {
          args: sh(
            "cat /data/sub/hello; " +
              "touch /data/sub/x 2>/dev/null && echo SUB-WRITABLE || echo SUB-READONLY; " +
              "touch /data/top 2>/dev/null && echo TOP-WRITABLE || echo TOP-READONLY; echo checked",
          ),
        },
      }),
      1,
    );
    await node.put(config);
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    const log = await logWith(s.logPath, "checked");
    expect(log).toContain("from-the-submount");
    expect(log).toContain("SUB-READONLY");
    expect(log).toContain("TOP-READONLY");
    expect(log).not.toContain("WRITABLE");
    expect(existsSync(join(vol, "sub", "x"))).toBe(false);
    // The host's own submount stays, writable: only the task's view is read-only.
    expect(await mountsBelow(join(vol, "sub"))).toEqual([join(vol, "sub")]);
    await writeFile(join(vol, "sub", "host-writes"), "ok");
  });

  it("binds a read-only root volume alone: a writable mount below it is not in the task", async () => {
    const uuid = newUuid();
    const root = join(volumes, "ro-root");
    await makeRootfs(root);
    await tmpfs(join(root, "mnt"));
    await writeFile(join(root, "mnt", "hello"), "from-the-submount\n");
    const config = node.build(
      app(uuid, {
        root: { volume: { path: root, readOnly: true } },
        process: {
          args: sh(
            "touch /mnt/x 2>/dev/null && echo ROOT-SUB-WRITABLE || echo ROOT-SUB-READONLY; echo checked",
          ),
        },
      }),
      1,
    );
    await node.put(config);
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    const log = await logWith(s.logPath, "checked");
    expect(log).toContain("ROOT-SUB-READONLY");
    expect(existsSync(join(root, "mnt", "x"))).toBe(false);
  });

  it("keeps a task's setuid-root files from unprivileged host users: tasks/ 0711, the task's dir 0700", async () => {
    const uuid = newUuid();
    // An image root: the task writes into its own overlay upper dir under the task's dir.
    const seed = join(node.dataDir, "seeds", "mounts-test", "rootfs");
    await makeRootfs(seed);
    const built = node.build(
      app(uuid, {
        process: { args: sh("cp /bin/busybox /suid-sh && chmod 4755 /suid-sh && echo MADE-SUID") },
      }),
      1,
    );
    await node.put({ ...built, rootfs: { kind: "image", seedKey: "local.mounts-test", rootfsPath: seed } });
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    await logWith(s.logPath, "MADE-SUID");
    const taskDir = join(node.dataDir, "tasks", uuid);
    // The upper dir is per seed: <taskDir>/overlay/<key of the seed>/upper.
    const [key, ...others] = await readdir(join(taskDir, "overlay"));
    expect(others).toEqual([]);
    const suid = join(taskDir, "overlay", key!, "upper", "suid-sh");
    const st = await stat(suid);
    expect(st.uid).toBe(0);
    expect(st.mode & 0o4000).toBe(0o4000);
    // What an unprivileged host user gets: nothing under the task's dir.
    const reach = await asNobody(`test -e ${suid} && echo REACHABLE || echo DENIED; cat ${s.logPath}`);
    expect(reach.out).toContain("DENIED");
    expect(reach.out).not.toContain("MADE-SUID");
    expect(((await stat(join(node.dataDir, "tasks"))).mode & 0o777).toString(8)).toBe("711");
    expect(((await stat(taskDir)).mode & 0o777).toString(8)).toBe("700");
  });

  it("detaches the staging mounts once the task is created (in the background); the task keeps its volume", async () => {
    const uuid = newUuid();
    const vol = join(volumes, "live");
    await mkdir(vol, { recursive: true });
    const config = node.build(
      app(uuid, {
        volumes: [{ path: vol, mountPoint: "/data", readOnly: false }],
        process: {
          args: sh(
            "echo started; while [ ! -e /data/ping ]; do sleep 0.1; done; cat /data/ping; echo pong > /data/pong",
          ),
        },
      }),
      1,
    );
    await node.put(config);
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    await logWith(s.logPath, "started");
    const taskDir = join(node.dataDir, "tasks", uuid);
    await expect.poll(() => mountsBelow(taskDir), { timeout: 10_000 }).toEqual([]);
    await expect.poll(() => existsSync(join(taskDir, "mounts")), { timeout: 10_000 }).toBe(false);
    await writeFile(join(vol, "ping"), "ping-from-the-host\n");
    await logWith(s.logPath, "ping-from-the-host");
    await waitFor(() => existsSync(join(vol, "pong")), { timeoutMs: 10_000, message: "no pong" });
  });

  it("sweeps staging mounts an executor left when it died, before it creates anything", async () => {
    const left = join(node.dataDir, "tasks", "0e012000-0000-4000-8000-00000000dead", "mounts", "volume-0");
    const victim = join(volumes, "left-behind");
    await mkdir(victim, { recursive: true });
    await writeFile(join(victim, "keep"), "user data");
    await mkdir(left, { recursive: true });
    await execFileAsync("mount", ["--bind", victim, left]);
    deferCleanup(() => execFileAsync("umount", ["--lazy", left]).catch(() => undefined));
    await node.executor.kill(0, "SIGKILL");
    const pid = node.executor.respawn(0).pid;
    await node.executor.waitForLine((l) => l.pid === pid && l.json?.event === "resynced", 60_000);
    expect(await mountsBelow(left)).toEqual([]);
    expect(await readFile(join(victim, "keep"), "utf8")).toBe("user data");
  });

  it("never deletes through a mount when it removes an app's directory", async () => {
    const uuid = newUuid();
    const config = node.build(app(uuid, { process: { args: sh("echo up") } }), 1);
    await node.put(config);
    const s = await node.settled(uuid);
    expect(s.state).toBe("RUNNING");
    const taskDir = join(node.dataDir, "tasks", uuid);
    const victim = join(volumes, "victim");
    await mkdir(victim, { recursive: true });
    await writeFile(join(victim, "keep"), "user data");
    await mkdir(join(taskDir, "stray"));
    await execFileAsync("mount", ["--bind", victim, join(taskDir, "stray")]);
    deferCleanup(() => execFileAsync("umount", ["--lazy", join(taskDir, "stray")]).catch(() => undefined));
    await node.remove(uuid);
    await waitFor(async () => !(await node.hasContainer(uuid)) && node.statuses.get(uuid) === undefined, {
      timeoutMs: 30_000,
      message: "the app was not removed",
    });
    // Whatever was mounted there, the removal did not delete through it.
    expect(await readFile(join(victim, "keep"), "utf8").catch((e: Error) => e.message)).toBe("user data");
    await waitFor(() => !existsSync(taskDir), {
      timeoutMs: 10_000,
      message: "the app's directory is still there",
    });
  });
});
