import { describe, expect, it } from "vitest";
import { buildBanner } from "../src/banner.js";
import type { BannerInfo } from "../src/banner.js";

const info = (over: Partial<BannerInfo> = {}): BannerInfo => ({
  launcherPid: 100,
  natsUrl: "nats://127.0.0.1:4222",
  natsPid: 101,
  natsLog: "/d/logs/nats-server.log",
  natsCredentialsDir: null,
  containerdAddress: "/r/containerd.sock",
  containerdPid: 102,
  containerdLog: "/d/logs/containerd.log",
  dataDir: "/d",
  runDir: "/r",
  logDir: "/d/logs",
  stateFile: "/d/launcher.json",
  servicesDir: "/repo/services",
  workers: ["spec-builder", "task-executor"],
  missingWorkers: [],
  keepTasks: false,
  ...over,
});

describe("buildBanner", () => {
  it("points a newcomer to eve-tasks, and to the nats CLI only as an option", () => {
    const text = buildBanner(info());
    expect(text).toContain("npx eve-tasks apply -f examples/hello.json");
    expect(text).toContain("npx eve-tasks get");
    expect(text).toContain("the nats CLI is optional");
    // No line tells the user to run the nats CLI.
    expect(text.split("\n").filter((l) => /^\s*nats\s/.test(l))).toEqual([]);
    // At the default URL nothing needs setting.
    expect(text).not.toContain("NATS_URL");
  });

  it("says which NATS_URL to export when NATS is not at the default, without its password", () => {
    const text = buildBanner(info({ natsUrl: "nats://task-executor:s3cret@127.0.0.1:41234", natsPid: null }));
    expect(text).toMatch(/export NATS_URL='nats:\/\/[^']*127\.0\.0\.1:41234'/);
    expect(text).not.toContain("s3cret");
  });
});
