// The fleet's pure decisions: bucket subject prefixes of mirrors, the hub's source plans, device
// users' permissions, leaf URLs, the executor lease, and --replicas.
import { describe, expect, it } from "vitest";
import {
  bucketDifferences,
  bucketSubjectPrefix,
  controllerMirrorConfig,
  decideLease,
  deviceSource,
  isControllerMirrorOf,
  planDeviceSources,
  sourceDomain,
  workQueueConsumerConfig,
} from "@eve-tasks/bus";
import type { LeaseValue } from "@eve-tasks/bus";
import {
  devicePermissionsOnHub,
  hubLeafUrls,
  hubNatsPermissions,
  leafUrlsConfigValue,
  renderDeviceLeafConfig,
  renderHubNatsPermissions,
} from "@eve-tasks/embedded";
import { parseReplicas, planWorkerProcesses } from "@eve-tasks/launcher";
import { AppInstanceConfigSchema } from "@eve-tasks/schemas";

describe("a device's controller bucket, a mirror of the hub's controller-<node>", () => {
  it("is read by its origin's subjects and counts as the same bucket", () => {
    const m = controllerMirrorConfig("dev1");
    expect(m.mirror).toMatchObject({
      name: "KV_controller-dev1",
      external: { api: "$JS.hub.API", deliver: "eve.fleet.dev1.m" },
    });
    expect(bucketSubjectPrefix("controller", m)).toBe("$KV.controller-dev1");
    expect(bucketSubjectPrefix("controller", {})).toBe("$KV.controller");
    expect(bucketDifferences(m)).toEqual([]);
    expect(isControllerMirrorOf(m, "dev1")).toBe(true);
    expect(isControllerMirrorOf(m, "dev2")).toBe(false);
    expect(bucketDifferences({ ...m, mirror: { name: "ORDERS" } })).toEqual([
      'it mirrors "ORDERS", which is not a bucket',
    ]);
    expect(bucketDifferences({ ...m, max_msgs_per_subject: 5 })[0]).toMatch(/max_msgs_per_subject is 5/);
  });

  it("the spec-builders' work queue filters the mirror's subjects", () => {
    const source = { agent: "controller", type: "AppInstanceConfig", schema: AppInstanceConfigSchema };
    expect(
      workQueueConsumerConfig({ source, durable: "spec-builder" }, "$KV.controller-dev1").filter_subject,
    ).toBe("$KV.controller-dev1.AppInstanceConfig.>");
    expect(workQueueConsumerConfig({ source, durable: "spec-builder" }).filter_subject).toBe(
      "$KV.controller.AppInstanceConfig.>",
    );
  });
});

describe("the hub's sources", () => {
  it("adds each device once, keeps the others, removes none", () => {
    const existing = [deviceSource("KV_task-executor", "a"), { name: "OTHER" }];
    const plan = planDeviceSources("KV_task-executor", existing, ["a", "b", "b", "c"]);
    expect(plan.added).toEqual(["b", "c"]);
    expect(plan.sources.map((s) => sourceDomain(s) ?? s.name)).toEqual(["a", "OTHER", "b", "c"]);
    expect(plan.sources[2]).toMatchObject({ external: { api: "$JS.b.API", deliver: "eve.fleet.b.s" } });
    expect(planDeviceSources("KV_task-executor", plan.sources, ["a", "b", "c"]).added).toEqual([]);
  });
});

describe("a device's user on the hub", () => {
  it("reaches only its own bucket, domain and delivery subjects", () => {
    const p = devicePermissionsOnHub("dev1").permissions!;
    const pub = p.publishAllow.flatMap((g) => g.subjects);
    const sub = p.subscribeAllow.flatMap((g) => g.subjects);
    expect(pub).toContain("$JS.hub.API.CONSUMER.CREATE.KV_controller-dev1");
    expect(pub.filter((s) => s.includes("dev2") || s.includes("STREAM.") || s.startsWith("$KV."))).toEqual(
      [],
    );
    expect(pub).toContain("eve.fleet.dev1.>");
    expect(sub).toContain("$JS.dev1.API.>");
    expect(
      sub.filter((s) => s.startsWith("$JS.") && s.includes(".API.") && !s.startsWith("$JS.dev1.")),
    ).toEqual([]);
  });

  it("receives its own executor's signal and log requests, not stop-tasks, and replies only to those", () => {
    const p = devicePermissionsOnHub("dev1").permissions!;
    const pub = p.publishAllow.flatMap((g) => g.subjects);
    const sub = p.subscribeAllow.flatMap((g) => g.subjects);
    expect(sub.filter((s) => s.startsWith("eve.rpc."))).toEqual(["eve.rpc.task-executor.dev1.*"]);
    expect(p.subscribeDeny?.flatMap((g) => g.subjects)).toEqual(["eve.rpc.task-executor.dev1.stop-tasks"]);
    // Replies go only to the hub users' inboxes below .fleet.dev1: never their other replies.
    expect(pub.filter((s) => s.startsWith("_INBOX"))).toEqual([
      "_INBOX_admin.fleet.dev1.>",
      "_INBOX_controller.fleet.dev1.>",
      "_INBOX_viewer.fleet.dev1.>",
    ]);
    expect(sub.filter((s) => s.startsWith("_INBOX"))).toEqual([]);
    const rendered = renderHubNatsPermissions({ devices: ["dev1"] });
    const device = rendered.slice(rendered.indexOf("user: device-dev1"));
    expect(device).toMatch(
      /subscribe: \{\s+allow: \[[^\]]*\]\s+deny: \[\s+# [^\n]*\n\s+"eve\.rpc\.task-executor\.dev1\.stop-tasks"/,
    );
  });

  it("the hub's viewer and controller may ask any device's executor for logs; only the controller signals", () => {
    const users = hubNatsPermissions({ devices: ["a"] });
    const pub = (u: string) =>
      users.find((x) => x.user === u)!.permissions!.publishAllow.flatMap((g) => g.subjects);
    expect(pub("viewer")).toContain("eve.rpc.task-executor.*.logs");
    expect(pub("viewer").filter((s) => s.endsWith(".signal"))).toEqual([]);
    expect(pub("controller")).toEqual(
      expect.arrayContaining(["eve.rpc.task-executor.*.logs", "eve.rpc.task-executor.*.signal"]),
    );
  });

  it("the hub's controller writes every device's bucket, and devices sharing a password variable are refused", () => {
    const users = hubNatsPermissions({ devices: ["a", "b"] });
    expect(users.map((u) => u.user)).toEqual(["admin", "controller", "viewer", "device-a", "device-b"]);
    const ctl = users.find((u) => u.user === "controller")!.permissions!.publishAllow[0]!;
    expect(ctl.subjects).toEqual(["$KV.controller-a.>", "$KV.controller-b.>"]);
    expect(() => hubNatsPermissions({ devices: ["a-b", "a_b"] })).toThrow(/share the password variable/);
    expect(() => hubNatsPermissions({ devices: ["1x"] })).toThrow(/invalid device name/);
    expect(renderHubNatsPermissions({ devices: ["a"] })).toContain("$EVE_NATS_DEVICE_A_PASSWORD");
  });
});

describe("device mode's leaf URL", () => {
  it("fills in the device user and the password file's password", () => {
    expect(hubLeafUrls("nats-leaf://h1:7422, nats-leaf://h2:7422", "dev1", "pw")).toEqual([
      "nats-leaf://device-dev1:pw@h1:7422",
      "nats-leaf://device-dev1:pw@h2:7422",
    ]);
    expect(hubLeafUrls("nats-leaf://u:given@h1:7422", "dev1", "pw")).toEqual(["nats-leaf://u:given@h1:7422"]);
    expect(() => hubLeafUrls("nats-leaf://h1:7422", "dev1", undefined)).toThrow(
      /no password for device-dev1/,
    );
    expect(() => hubLeafUrls("http://h1:7422", "dev1", "pw")).toThrow(/must be nats-leaf/);
    expect(() => hubLeafUrls("nats-leaf://h1", "dev1", "pw")).toThrow(/must be nats-leaf/);
    expect(leafUrlsConfigValue(["nats-leaf://a:b@h:1"])).toBe('["nats-leaf://a:b@h:1"]');
    expect(renderDeviceLeafConfig({ node: "dev1" })).toMatch(/domain: dev1/);
    expect(() => renderDeviceLeafConfig({ node: "dev 1" })).toThrow(/invalid node name/);
  });
});

describe("the task-executor's lease", () => {
  const me = { pid: 10, startTicks: 5, host: "h", bootId: "b" };
  const held = (over: Partial<LeaseValue> = {}): LeaseValue => ({
    schemaVersion: 1,
    pid: 20,
    startTicks: 7,
    host: "h",
    bootId: "b",
    acquiredAt: "",
    renewedAt: "",
    ttlMs: 15_000,
    ...over,
  });
  it("refuses while its holder on this host runs, whatever the age; takes it when that holder is gone", () => {
    expect(decideLease(held(), 60_000, me, () => true)).toMatchObject({ take: false });
    expect(decideLease(held(), 0, me, () => false)).toMatchObject({ take: true });
  });
  it("from another host or boot: refuses until the lease is older than its TTL", () => {
    expect(decideLease(held({ host: "other" }), 1_000, me, () => false)).toMatchObject({ take: false });
    expect(decideLease(held({ bootId: "old" }), 20_000, me, () => true)).toMatchObject({ take: true });
  });
  it("takes a missing or unreadable lease, and its own", () => {
    expect(decideLease(undefined, 0, me, () => true).take).toBe(true);
    expect(decideLease("unreadable", 0, me, () => true).take).toBe(true);
    expect(decideLease(held({ pid: 10 }), 0, me, () => true).take).toBe(true);
  });
});

describe("--replicas", () => {
  it("runs N processes of a worker, named <worker>-<n> after the first", () => {
    const r = parseReplicas("spec-builder=3,hypervisor-seed-fetcher=2");
    const workers = ["spec-builder", "task-executor", "hypervisor-seed-fetcher"].map((name) => ({
      name,
      main: `/${name}.js`,
    }));
    const plan = planWorkerProcesses(workers, r);
    expect(plan.processes.map((p) => `${p.name}:${p.worker}`)).toEqual([
      "spec-builder:spec-builder",
      "spec-builder-2:spec-builder",
      "spec-builder-3:spec-builder",
      "task-executor:task-executor",
      "hypervisor-seed-fetcher:hypervisor-seed-fetcher",
      "hypervisor-seed-fetcher-2:hypervisor-seed-fetcher",
    ]);
    expect(planWorkerProcesses(workers, parseReplicas("nope=2")).unknown).toEqual(["nope"]);
  });
  it("refuses more than one task-executor or proc-monitor, bad counts and repeats", () => {
    expect(() => parseReplicas("task-executor=2")).toThrow(/task-executor runs once per node/);
    expect(() => parseReplicas("proc-monitor=2")).toThrow(/proc-monitor runs once per node/);
    expect(parseReplicas("task-executor=1").get("task-executor")).toBe(1);
    expect(() => parseReplicas("spec-builder=0")).toThrow(/a count from 1/);
    expect(() => parseReplicas("spec-builder=3,spec-builder=2")).toThrow(/given twice/);
    expect(() => parseReplicas("spec-builder")).toThrow(/expected <worker>=<count>/);
  });
});
