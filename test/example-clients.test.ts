// The clients of examples/clients, which use none of eve-tasks' code (nats.js alone; Python's
// standard library alone), against `npm start`'s system, each as a child process with the
// controller user's credentials: each applies an app, sees it RUNNING, reads its events and
// deletes it. What they print is checked against what the bus said (watched here as the
// read-only viewer), and the app they send is valid against the contract's JSON Schema.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { messageTable } from "@eve-tasks/schemas";
import type { TaskStatus, TaskStatusSchema } from "@eve-tasks/schemas";
import { REPO_ROOT } from "./harness/index.js";
import { startTestLauncher } from "./harness/launcher.js";
import type { TestLauncher } from "./harness/launcher.js";

const CLIENTS = join(REPO_ROOT, "examples/clients");

let launcher: TestLauncher | undefined;
let bus: Bus | undefined;
let statuses: Subscription<typeof TaskStatusSchema> | undefined;
/** Every status the viewer saw, per app. */
const history = new Map<string, TaskStatus[]>();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runClient(command: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        NATS_URL: launcher!.natsUrl,
        NATS_USER: "controller",
        NATS_PASSWORD_FILE: launcher!.passwordFile("controller"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 150_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** What every client must have printed and done. */
function checkRun(name: string, r: Run): void {
  expect({ name, code: r.code, stderr: r.stderr }).toEqual({ name, code: 0, stderr: "" });
  const uuid = /^app ([0-9a-f-]{36})$/m.exec(r.stdout)?.[1];
  expect(uuid, r.stdout).toBeDefined();
  const pid = Number(
    /^RUNNING: anchor PID (\d+), memory limit 33554432 bytes, log (\S+)$/m.exec(r.stdout)?.[1],
  );
  expect(pid, r.stdout).toBeGreaterThan(0);
  expect(r.stdout).toMatch(/^applied at revision \d+$/m);
  expect(r.stdout).toMatch(new RegExp(`^status ${uuid}: gone$`, "m"));
  const events = /^events seen: (.*)$/m.exec(r.stdout)?.[1]?.split(", ") ?? [];
  expect(events).toEqual(expect.arrayContaining(["created", "started", "stopping", "exited"]));
  expect(r.stdout).toMatch(/\ndone\n$/);
  // The bus agrees: that app ran with that anchor PID, and its status is gone.
  const seen = history.get(uuid!) ?? [];
  expect(seen.some((s) => s.state === "RUNNING" && s.taskId === pid)).toBe(true);
  expect(statuses!.get(uuid!)).toBeUndefined();
}

beforeAll(async () => {
  launcher = await startTestLauncher({ env: { EVE_UI_PORT: "off" } });
  bus = await connectBus({
    servers: launcher.natsUrl,
    name: "example-clients-test",
    credentials: { user: "viewer", passwordFile: launcher.passwordFile("viewer") },
  });
  const note = (k: string, s: TaskStatus): void => void history.set(k, [...(history.get(k) ?? []), s]);
  statuses = await subscribe(bus, {
    ...messageTable("TaskStatus"),
    onCreate: note,
    onModify: note,
  });
}, 180_000);

afterAll(async () => {
  await statuses?.close().catch(() => undefined);
  await bus?.close().catch(() => undefined);
  const exit = await launcher?.stop();
  if (exit) expect(exit.code === 0 || exit.signal === "SIGINT").toBe(true);
}, 180_000);

describe("the example clients", () => {
  it("apply an app that is valid against the contract's JSON Schema", () => {
    // The schemas carry a `pattern` beside each `format` (uuid, ipv4...): the patterns check.
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    const schema = JSON.parse(
      readFileSync(join(REPO_ROOT, "packages/schemas/json-schema/AppInstanceConfig.schema.json"), "utf8"),
    ) as object;
    const validate = ajv.compile(schema);
    const app = JSON.parse(readFileSync(join(CLIENTS, "app.json"), "utf8")) as unknown;
    expect(validate(app), JSON.stringify(validate.errors)).toBe(true);
  });

  it("nats.js (transport-node and kv only, no eve-tasks import) applies, watches, reads events and deletes", async () => {
    const source = readFileSync(join(CLIENTS, "nats-client.mjs"), "utf8");
    const imports = [...source.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
    expect(imports.filter((i) => !i!.startsWith("node:")).sort()).toEqual([
      "@nats-io/kv",
      "@nats-io/transport-node",
    ]);
    checkRun("nats-client.mjs", await runClient(process.execPath, [join(CLIENTS, "nats-client.mjs")]));
  }, 180_000);

  it("Python with the standard library alone does the same over the NATS text protocol", async () => {
    const source = readFileSync(join(CLIENTS, "eve_client.py"), "utf8");
    const imports = [...source.matchAll(/^(?:import|from) (\w+)/gm)].map((m) => m[1]);
    expect(
      imports.filter(
        (i) => !["json", "os", "secrets", "socket", "sys", "time", "uuid", "urllib"].includes(i!),
      ),
    ).toEqual([]);
    checkRun("eve_client.py", await runClient("python3", [join(CLIENTS, "eve_client.py")]));
  }, 180_000);
});
