// registerDefaultTools against the shared nats-server: an absent key gets the built-in image, a
// user's own choice is kept, a previous built-in image (same layout parent dir) is replaced, and
// the same ref again changes nothing. Each test uses its own key under HypervisorToolsConfig, so
// nothing else using `default` on the shared server is disturbed.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Publication, connectBus, ensureBucket } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import type { HypervisorToolsConfigSchema } from "@eve-tasks/schemas";
import { messageTable } from "@eve-tasks/schemas";
import { ToolsImageError, registerDefaultTools } from "@eve-tasks/tools-image";
import { harnessEnv } from "../../../test/harness/index.js";

const OUT = "/var/lib/eve-tasks-test/tools-images/qemu";
const REF = `oci:${OUT}/qemu-8.0-1:qemu-8.0-1`;

let bus: Bus;
let tools: Publication<typeof HypervisorToolsConfigSchema>;
const keyName = (): string => `t${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  bus = await connectBus({ servers: harnessEnv().natsUrl, name: "tools-image-register-test" });
  await ensureBucket(bus, "controller");
  tools = new Publication(bus, messageTable("HypervisorToolsConfig"));
});

afterAll(async () => {
  await bus?.close();
});

describe("registerDefaultTools", () => {
  it("registers the image when the key is absent, and changes nothing the second time", async () => {
    const name = keyName();
    const lines: string[] = [];
    const first = await registerDefaultTools(bus, REF, { name, log: (l) => lines.push(l) });
    expect(first).toMatchObject({ outcome: "registered", ref: REF, previous: undefined });
    expect(await tools.get(name)).toEqual({ schemaVersion: 1, image: REF });
    const second = await registerDefaultTools(bus, REF, { name });
    expect(second).toMatchObject({ outcome: "unchanged", previous: REF });
    expect(lines).toEqual([`HypervisorToolsConfig.${name}: registered the built-in image ${REF}`]);
  });

  it("keeps a user's own choice, from a registry or a layout elsewhere", async () => {
    for (const own of ["registry.example:5000/tools/qemu:9", "oci:/srv/my-tools/qemu:1"]) {
      const name = keyName();
      await tools.publish(name, { schemaVersion: 1, image: own });
      const lines: string[] = [];
      const r = await registerDefaultTools(bus, REF, { name, log: (l) => lines.push(l) });
      expect(r).toMatchObject({ outcome: "kept", previous: own });
      expect(lines[0]).toContain(`kept the user's choice ${own}`);
      expect(await tools.get(name)).toEqual({ schemaVersion: 1, image: own });
    }
  });

  it("keeps a value that does not validate (it is not ours to replace)", async () => {
    const name = keyName();
    const kv = await bus.bucket("controller");
    await kv.put(`HypervisorToolsConfig.${name}`, '{"image": 42}');
    const r = await registerDefaultTools(bus, REF, { name });
    expect(r.outcome).toBe("kept");
    expect((await kv.get(`HypervisorToolsConfig.${name}`))?.string()).toBe('{"image": 42}');
  });

  it("replaces a previous built-in image from the same layout parent dir", async () => {
    const name = keyName();
    const old = `oci:${OUT}/qemu-7.2-dfsg-7-deb12u18-b3:qemu-7.2-dfsg-7-deb12u18-b3`;
    await tools.publish(name, { schemaVersion: 1, image: old });
    const r = await registerDefaultTools(bus, REF, { name });
    expect(r).toMatchObject({ outcome: "replaced", previous: old, ref: REF });
    expect(r.message).toContain(`replaced the previous built-in image ${old} with ${REF}`);
    expect(await tools.get(name)).toEqual({ schemaVersion: 1, image: REF });
  });

  it("refuses a ref that is not a local OCI layout", async () => {
    await expect(registerDefaultTools(bus, "docker.io/library/qemu:1", { name: keyName() })).rejects.toThrow(
      ToolsImageError,
    );
  });
});
