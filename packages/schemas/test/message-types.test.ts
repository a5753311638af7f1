import { describe, expect, it } from "vitest";
import {
  AppInstanceConfigSchema,
  CONTAINERD_NAMESPACE,
  EVENTS_STREAM,
  SeedSchema,
  TASK_LABELS,
  agents,
  cgroupsPathFor,
  eventSubject,
  hypervisorSeedKey,
  imageSeedKey,
  isAgent,
  messageTypeNameOf,
  messageTypes,
  messageTypesOf,
  sha256Hex,
  signalSubject,
  taskLogPath,
} from "../src/index.js";
import { UUID } from "./fixtures.js";

describe("message types", () => {
  it("maps every message type to its publishing agent", () => {
    const owners = Object.fromEntries(Object.entries(messageTypes).map(([type, info]) => [type, info.agent]));
    expect(owners).toEqual({
      AppInstanceConfig: "controller",
      HypervisorToolsConfig: "controller",
      NetworkInstanceConfig: "controller",
      TaskConfig: "spec-builder",
      TaskStatus: "task-executor",
      NetworkInstanceStatus: "task-executor",
      TaskMetrics: "proc-monitor",
      AnchorTax: "proc-monitor",
      HypervisorSeed: "hypervisor-seed-fetcher",
      ImageSeed: "hypervisor-seed-fetcher",
    });
    expect(agents).toEqual([
      "controller",
      "spec-builder",
      "task-executor",
      "proc-monitor",
      "hypervisor-seed-fetcher",
    ]);
    for (const info of Object.values(messageTypes)) expect(isAgent(info.agent)).toBe(true);
    expect(isAgent("nats")).toBe(false);
  });

  it("lists an agent's types and names a schema", () => {
    expect(messageTypesOf("hypervisor-seed-fetcher")).toEqual(["HypervisorSeed", "ImageSeed"]);
    expect(messageTypesOf("proc-monitor")).toEqual(["TaskMetrics", "AnchorTax"]);
    expect(messageTypeNameOf(AppInstanceConfigSchema)).toBe("AppInstanceConfig");
    expect(messageTypes.ImageSeed.schema).toBe(SeedSchema);
  });
});

describe("names", () => {
  it("are those of the public contract", () => {
    expect(EVENTS_STREAM).toBe("TASK_EVENTS");
    expect(eventSubject(UUID)).toBe(`eve.events.${UUID}`);
    expect(signalSubject("local")).toBe("eve.rpc.task-executor.local.signal");
    expect(CONTAINERD_NAMESPACE).toBe("eve-user-apps");
    expect(cgroupsPathFor(UUID)).toBe(`/eve-user-apps/${UUID}`);
    expect(TASK_LABELS).toEqual({
      uuid: "org.lfedge.eve-tasks.uuid",
      version: "org.lfedge.eve-tasks.version",
      configRevision: "org.lfedge.eve-tasks.config-revision",
      specSha256: "org.lfedge.eve-tasks.spec-sha256",
    });
    expect(taskLogPath("/data", UUID)).toBe(`/data/tasks/${UUID}/console.log`);
    expect(hypervisorSeedKey("local", "default")).toBe("local.default");
    expect(imageSeedKey("local", "app:1")).toBe(`local.${sha256Hex("app:1")}`);
  });
});
