import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { generateJsonSchemaFiles } from "../src/index.js";

const dir = fileURLToPath(new URL("../json-schema/", import.meta.url));
const HOW = "regenerate with: npm run generate -w @eve-tasks/schemas";

describe("committed JSON Schema files", () => {
  const files = generateJsonSchemaFiles();

  it("are exactly one per message", async () => {
    const committed = (await readdir(dir)).filter((name) => name.endsWith(".schema.json")).sort();
    expect(committed, `json-schema/ has stale or missing files; ${HOW}`).toEqual(
      files.map((f) => f.fileName),
    );
    expect(files.map((f) => f.fileName)).toEqual([
      "AnchorTax.schema.json",
      "AppInstanceConfig.schema.json",
      "HypervisorSeed.schema.json",
      "HypervisorToolsConfig.schema.json",
      "ImageSeed.schema.json",
      "LogsReply.schema.json",
      "LogsRequest.schema.json",
      "NetworkInstanceConfig.schema.json",
      "NetworkInstanceStatus.schema.json",
      "SignalReply.schema.json",
      "SignalRequest.schema.json",
      "StopTasksReply.schema.json",
      "StopTasksRequest.schema.json",
      "TaskConfig.schema.json",
      "TaskEvent.schema.json",
      "TaskMetrics.schema.json",
      "TaskStatus.schema.json",
      "WorkerServiceMetadata.schema.json",
    ]);
  });

  for (const { fileName, text } of files) {
    it(`${fileName} matches the zod schema`, async () => {
      const committed = await readFile(new URL(fileName, `file://${dir}`), "utf8");
      expect(committed, `json-schema/${fileName} is out of date; ${HOW}`).toBe(text);
    });
  }

  it("describe what users may send: defaulted fields are optional", () => {
    const app = JSON.parse(
      files.find((f) => f.fileName === "AppInstanceConfig.schema.json")?.text ?? "{}",
    ) as {
      title: string;
      oneOf: { properties: Record<string, { default?: unknown; const?: unknown }>; required: string[] }[];
    };
    expect(app.title).toBe("AppInstanceConfig");
    const native = app.oneOf.find((o) => o.properties.virtualization?.const === "NOHYPER");
    expect(native?.required).toEqual(
      expect.arrayContaining(["schemaVersion", "uuid", "version", "resources", "root"]),
    );
    expect(native?.required).not.toContain("node");
    expect(native?.properties.node?.default).toBe("local");
    expect(native?.properties.stopTimeoutMs?.default).toBe(10000);
  });
});
