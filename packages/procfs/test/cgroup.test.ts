// The cgroup readers on fixture trees of both layouts (the files as the kernel writes them),
// and the layout detection from mountinfo texts.
import { join } from "node:path";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CgroupLayoutError,
  CgroupReader,
  cgroupDirsFor,
  cgroupLayoutFromMounts,
  countLines,
  detectCgroupLayout,
  flatKeyValue,
  parseMountinfo,
  parseV1Limit,
  parseV2Max,
} from "@eve-tasks/procfs";
import type { CgroupLayout } from "@eve-tasks/procfs";
import { fixtureDir, writeTree } from "./fixtures.js";

const TASK = "/eve-user-apps/6f1c1c1e-0c9a-4d43-9d2c-4a1b7c3e2f10";
const V1_UNLIMITED = "9223372036854771712\n";

const V1_MOUNTINFO = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const V2_MOUNTINFO = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;

describe("cgroup layout", () => {
  it("finds v1 controllers, including cpu,cpuacct, on a hybrid host", () => {
    const layout = cgroupLayoutFromMounts(parseMountinfo(V1_MOUNTINFO));
    expect(layout).toEqual({
      version: 1,
      controllers: {
        memory: { mountPoint: "/sys/fs/cgroup/memory", root: "/" },
        cpuacct: { mountPoint: "/sys/fs/cgroup/cpu,cpuacct", root: "/" },
        pids: { mountPoint: "/sys/fs/cgroup/pids", root: "/" },
      },
    });
    expect(cgroupDirsFor(layout!, TASK)).toEqual({
      version: 1,
      memory: `/sys/fs/cgroup/memory${TASK}`,
      cpu: `/sys/fs/cgroup/cpu,cpuacct${TASK}`,
      pids: `/sys/fs/cgroup/pids${TASK}`,
      threads: `/sys/fs/cgroup/pids${TASK}`,
    });
  });

  it("finds v2 at /sys/fs/cgroup, with one directory for every file", () => {
    const layout = cgroupLayoutFromMounts(parseMountinfo(V2_MOUNTINFO));
    expect(layout).toEqual({ version: 2, unified: { mountPoint: "/sys/fs/cgroup", root: "/" } });
    const d = `/sys/fs/cgroup${TASK}`;
    expect(cgroupDirsFor(layout!, TASK)).toEqual({ version: 2, memory: d, cpu: d, pids: d, threads: d });
  });

  it("resolves paths inside a mount of a sub-tree (cgroup namespace) and unescapes mount points", () => {
    const text = "26 25 0:24 /eve-user-apps /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
    const layout = cgroupLayoutFromMounts(parseMountinfo(text));
    expect(layout).toEqual({ version: 2, unified: { mountPoint: "/mnt/my cg", root: "/eve-user-apps" } });
    expect(cgroupDirsFor(layout!, "/eve-user-apps/x").memory).toBe("/mnt/my cg/x");
  });

  it("reads mountinfo from a file, falls back to the cgroup root's directories, else says why", () => {
    const dir = fixtureDir();
    writeTree(dir, { mountinfo: V2_MOUNTINFO, "empty-mountinfo": "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" });
    expect(detectCgroupLayout({ mountinfoPath: join(dir, "mountinfo") }).version).toBe(2);
    // No cgroup mount in mountinfo: the directories under the cgroup root decide.
    const root = join(dir, "cg");
    mkdirSync(join(root, "memory"), { recursive: true });
    mkdirSync(join(root, "cpu,cpuacct"), { recursive: true });
    expect(detectCgroupLayout({ mountinfoPath: join(dir, "empty-mountinfo"), cgroupRoot: root })).toEqual({
      version: 1,
      controllers: {
        memory: { mountPoint: join(root, "memory"), root: "/" },
        cpuacct: { mountPoint: join(root, "cpu,cpuacct"), root: "/" },
      },
    });
    expect(() =>
      detectCgroupLayout({ mountinfoPath: join(dir, "missing"), cgroupRoot: join(dir, "nothing") }),
    ).toThrow(CgroupLayoutError);
    expect(() =>
      detectCgroupLayout({ mountinfoPath: join(dir, "missing"), cgroupRoot: join(dir, "nothing") }),
    ).toThrow(/ENOENT.*neither a cgroup2 mount nor holds v1 controller directories/);
  });

  it("detects this host's layout", () => {
    const layout = detectCgroupLayout();
    expect([1, 2]).toContain(layout.version);
  });
});

describe("cgroup file values", () => {
  it("takes v2 'max' and a huge v1 limit as no limit (null)", () => {
    expect(parseV2Max("max\n", "memory.max")).toBeNull();
    expect(parseV2Max("67108864\n", "memory.max")).toBe(67108864);
    expect(parseV1Limit(V1_UNLIMITED, "memory.limit_in_bytes")).toBeNull();
    expect(parseV1Limit("67108864\n", "memory.limit_in_bytes")).toBe(67108864);
    expect(() => parseV2Max("lots\n", "memory.max")).toThrow(/memory.max: not an unsigned integer/);
  });

  it("finds one key of a flat keyed file without splitting it", () => {
    const events = "low 0\nhigh 0\nmax 7\noom 1\noom_kill 3\n";
    expect(flatKeyValue(events, "memory.events", "oom_kill")).toBe(3);
    expect(flatKeyValue(events, "memory.events", "low")).toBe(0);
    expect(flatKeyValue(events, "memory.events", "oom")).toBe(1);
    expect(
      flatKeyValue("oom_kill_disable 0\nunder_oom 0\n", "memory.oom_control", "oom_kill"),
    ).toBeUndefined();
    expect(() => flatKeyValue("oom_kill x\n", "memory.events", "oom_kill")).toThrow(/oom_kill is not/);
  });

  it("counts the IDs of a thread list", () => {
    expect(countLines("")).toBe(0);
    expect(countLines("12\n13\n14\n")).toBe(3);
    expect(countLines("12\n13")).toBe(2);
  });
});

/** A v1 fixture: one hierarchy directory per controller, like /sys/fs/cgroup/<controller>. */
function v1Fixture(root: string, files: Record<string, string>): CgroupLayout {
  writeTree(root, files);
  const m = (name: string) => ({ mountPoint: join(root, name), root: "/" });
  return { version: 1, controllers: { memory: m("memory"), cpuacct: m("cpu,cpuacct"), pids: m("pids") } };
}

const V1_FILES = {
  [`memory${TASK}/memory.usage_in_bytes`]: "41943040\n",
  [`memory${TASK}/memory.max_usage_in_bytes`]: "50331648\n",
  [`memory${TASK}/memory.limit_in_bytes`]: "67108864\n",
  [`memory${TASK}/memory.oom_control`]: "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
  [`cpu,cpuacct${TASK}/cpuacct.usage`]: "123456789\n",
  [`pids${TASK}/pids.current`]: "4\n",
  [`pids${TASK}/tasks`]: "10\n11\n",
};

const V2_FILES = {
  [`${TASK.slice(1)}/memory.current`]: "41943040\n",
  [`${TASK.slice(1)}/memory.peak`]: "50331648\n",
  [`${TASK.slice(1)}/memory.max`]: "67108864\n",
  [`${TASK.slice(1)}/memory.events`]: "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
  [`${TASK.slice(1)}/cpu.stat`]:
    "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
  [`${TASK.slice(1)}/pids.current`]: "4\n",
  [`${TASK.slice(1)}/cgroup.threads`]: "10\n11\n",
};

describe("CgroupReader on v1 fixtures", () => {
  it("reads every value", () => {
    const layout = v1Fixture(fixtureDir(), V1_FILES);
    const r = new CgroupReader(cgroupDirsFor(layout, TASK));
    expect(r.read()).toEqual({
      values: {
        memoryUsageBytes: 41943040,
        memoryPeakBytes: 50331648,
        memoryLimitBytes: 67108864,
        oomKills: 2,
        cpuNs: 123456789,
        threads: 4,
      },
      problems: [],
    });
    r.close();
  });

  it("takes the huge limit as null (measured), counts tasks without pids.current, and leaves missing files out", () => {
    const root = fixtureDir();
    const files: Record<string, string> = {
      ...V1_FILES,
      [`memory${TASK}/memory.limit_in_bytes`]: V1_UNLIMITED,
    };
    delete files[`pids${TASK}/pids.current`];
    delete files[`memory${TASK}/memory.max_usage_in_bytes`];
    // A kernel before 4.13 has no oom_kill line.
    files[`memory${TASK}/memory.oom_control`] = "oom_kill_disable 0\nunder_oom 0\n";
    const r = new CgroupReader(cgroupDirsFor(v1Fixture(root, files), TASK));
    const { values } = r.read();
    expect(values).toEqual({
      memoryUsageBytes: 41943040,
      memoryLimitBytes: null,
      cpuNs: 123456789,
      threads: 2,
    });
    expect("memoryPeakBytes" in values).toBe(false);
    expect("oomKills" in values).toBe(false);
    r.close();
  });

  it("reads only the values asked for", () => {
    const r = new CgroupReader(cgroupDirsFor(v1Fixture(fixtureDir(), V1_FILES), TASK), ["oomKills"]);
    expect(r.read()).toEqual({ values: { oomKills: 2 }, problems: [] });
    r.close();
  });

  it("reads changes through its open handles, and nothing once the cgroup is gone; reopens when it is back", () => {
    const root = fixtureDir();
    const r = new CgroupReader(cgroupDirsFor(v1Fixture(root, V1_FILES), TASK));
    expect(r.read().values.memoryUsageBytes).toBe(41943040);
    writeFileSync(join(root, `memory${TASK}/memory.usage_in_bytes`), "1048576\n");
    expect(r.read().values.memoryUsageBytes).toBe(1048576);
    for (const c of ["memory", "cpu,cpuacct", "pids"]) rmSync(join(root, c + TASK), { recursive: true });
    // A regular file that is unlinked stays readable through its handle; a real cgroup gives
    // ENODEV (see the live test). A fresh reader sees nothing measured:
    const fresh = new CgroupReader(cgroupDirsFor(v1Fixture(root, {}), TASK));
    expect(fresh.read()).toEqual({ values: {}, problems: [] });
    writeTree(root, V1_FILES);
    expect(fresh.read().values.cpuNs).toBe(123456789);
    r.close();
    fresh.close();
  });

  it("reports a garbled file as a problem, not as a value", () => {
    const files = { ...V1_FILES, [`cpu,cpuacct${TASK}/cpuacct.usage`]: "garbage\n" };
    const r = new CgroupReader(cgroupDirsFor(v1Fixture(fixtureDir(), files), TASK));
    const reading = r.read();
    expect(reading.values.cpuNs).toBeUndefined();
    expect(reading.problems).toEqual([expect.stringMatching(/cpuacct\.usage: not an unsigned integer/)]);
    r.close();
  });

  it("leaves out what an unmounted controller would give", () => {
    const root = fixtureDir();
    writeTree(root, V1_FILES);
    const layout: CgroupLayout = {
      version: 1,
      controllers: { memory: { mountPoint: join(root, "memory"), root: "/" } },
    };
    const r = new CgroupReader(cgroupDirsFor(layout, TASK));
    // threads: counted from the memory hierarchy's tasks file (absent in this fixture).
    expect(Object.keys(r.read().values).sort()).toEqual([
      "memoryLimitBytes",
      "memoryPeakBytes",
      "memoryUsageBytes",
      "oomKills",
    ]);
    r.close();
  });
});

describe("CgroupReader on v2 fixtures", () => {
  const layoutAt = (root: string): CgroupLayout => ({ version: 2, unified: { mountPoint: root, root: "/" } });

  it("reads every value; cpu.stat's usage_usec as ns", () => {
    const root = fixtureDir();
    writeTree(root, V2_FILES);
    const r = new CgroupReader(cgroupDirsFor(layoutAt(root), TASK));
    expect(r.read()).toEqual({
      values: {
        memoryUsageBytes: 41943040,
        memoryPeakBytes: 50331648,
        memoryLimitBytes: 67108864,
        oomKills: 1,
        cpuNs: 123456000,
        threads: 4,
      },
      problems: [],
    });
    r.close();
  });

  it("takes 'max' as null (measured); no memory.peak (before Linux 5.19) is not measured", () => {
    const root = fixtureDir();
    const files: Record<string, string> = { ...V2_FILES, [`${TASK.slice(1)}/memory.max`]: "max\n" };
    delete files[`${TASK.slice(1)}/memory.peak`];
    delete files[`${TASK.slice(1)}/pids.current`];
    writeTree(root, files);
    const r = new CgroupReader(cgroupDirsFor(layoutAt(root), TASK));
    const { values } = r.read();
    expect(values.memoryLimitBytes).toBeNull();
    expect("memoryLimitBytes" in values).toBe(true);
    expect("memoryPeakBytes" in values).toBe(false);
    expect(values.threads).toBe(2); // from cgroup.threads
    r.close();
  });

  it("measures nothing for a cgroup that does not exist", () => {
    const r = new CgroupReader(cgroupDirsFor(layoutAt(fixtureDir()), TASK));
    expect(r.read()).toEqual({ values: {}, problems: [] });
    r.close();
  });
});
