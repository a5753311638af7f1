// The live status page of `npm start`, in a real browser (Debian's chromium driven by
// playwright-core): the launcher prints the page's URL; an app applied on the bus shows up
// RUNNING, then HALTED when it is stopped, without a reload; an app whose displayName is markup
// shows it as text and runs none of it; the page reads as the read-only viewer, which finds the
// NATS services answering $SRV.INFO and links their metrics. A screenshot is
// saved under test-artifacts/status-page/ (its path is printed).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Svcm } from "@nats-io/services";
import { connect } from "@nats-io/transport-node";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import type { TaskStatusSchema } from "@eve-tasks/schemas";
import { messageTable } from "@eve-tasks/schemas";
import { waitFor } from "./harness/index.js";
import { artifactDir, launchChromium } from "./harness/browser.js";
import type { TestBrowser } from "./harness/browser.js";
import { startTestLauncher } from "./harness/launcher.js";
import type { TestLauncher } from "./harness/launcher.js";

/** Markup an attacker could put in a displayName: it must be shown, never run or parsed. */
const HOSTILE_NAME = `<script>window.__pwned="script"</script><img src=x onerror="window.__pwned='img'">`;

let launcher: TestLauncher | undefined;
let browser: TestBrowser | undefined;
let bus: Bus | undefined;
let statuses: Subscription<typeof TaskStatusSchema>;

function app(uuid: string, over: Record<string, unknown> = {}): string {
  return JSON.stringify({
    schemaVersion: 1,
    uuid,
    version: "1",
    displayName: HOSTILE_NAME,
    virtualization: "NOHYPER",
    resources: { memoryMiB: 32, vcpus: 1 },
    root: { host: { readOnly: true } },
    process: { args: ["/bin/sh", "-c", "trap 'exit 0' TERM; echo up; sleep 3600 & wait"] },
    ...over,
  });
}

/** The text of `cell` in the row of app `uuid` once it matches `want`. */
async function cellBecomes(
  page: Page,
  uuid: string,
  cell: string,
  want: RegExp,
  timeoutMs = 60_000,
): Promise<string> {
  const locator = page.locator(`#apps tr[data-key="${uuid}"] td.${cell}`);
  await locator.filter({ hasText: want }).waitFor({ timeout: timeoutMs });
  return (await locator.textContent()) ?? "";
}

beforeAll(async () => {
  launcher = await startTestLauncher();
  bus = await connectBus({
    servers: launcher.natsUrl,
    name: "status-page-test",
    credentials: { user: "controller", passwordFile: launcher.passwordFile("controller") },
  });
  statuses = await subscribe(bus, {
    ...messageTable("TaskStatus"),
    onCreate: () => undefined,
  });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  await statuses?.close().catch(() => undefined);
  await bus?.close().catch(() => undefined);
  await launcher?.stop();
}, 180_000);

describe("the live status page", () => {
  it("is printed at start and served on 127.0.0.1", () => {
    expect(launcher?.statusPageUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
  });

  it("shows an app go RUNNING, then HALTED, without a reload; markup in its name is text", async () => {
    const page = await browser!.context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    let loads = 0;
    page.on("load", () => loads++);
    await page.goto(launcher!.statusPageUrl!);
    await page.locator("#conn[data-conn=live]").waitFor({ timeout: 10_000 });
    await page.evaluate(() => ((globalThis as unknown as { __sameDocument: boolean }).__sameDocument = true));
    // Read as the read-only NATS user (the header comes with the snapshot, which follows the
    // stream's opening), and the launcher's workers are listed with their PIDs.
    await page.locator("#where").filter({ hasText: "as viewer" }).waitFor({ timeout: 10_000 });
    for (const w of ["spec-builder", "task-executor", "proc-monitor", "hypervisor-seed-fetcher"]) {
      const pid = launcher!.state.workers[w]?.pid;
      await page
        .locator(`#workers tr[data-key="${w}"] td.pids`)
        .filter({ hasText: String(pid) })
        .waitFor({ timeout: 10_000 });
    }

    // A NATS service (as the workers offer theirs, `eve-tasks-<worker>` with node, version and
    // metrics in its $SRV.INFO), registered here as admin: the viewer's $SRV.INFO finds it.
    const admin = await connect({
      servers: launcher!.natsUrl,
      user: "admin",
      pass: readFileSync(launcher!.passwordFile("admin"), "utf8").trim(),
      inboxPrefix: "_INBOX_admin",
    });
    const service = await new Svcm(admin).add({
      name: "eve-tasks-page-test",
      version: "9.8.7",
      metadata: { node: "local", metrics: "http://127.0.0.1:9464/metrics" },
    });
    const serviceRow = page.locator(`#workers tr[data-key="page-test"]`);
    await serviceRow.locator("td.replicas").filter({ hasText: /^1$/ }).waitFor({ timeout: 20_000 });
    expect(await serviceRow.locator("td.metrics a").getAttribute("href")).toBe(
      "http://127.0.0.1:9464/metrics",
    );
    expect(await serviceRow.locator("td.metrics").textContent()).toContain("local 9.8.7");
    await service.stop();
    await admin.close();
    await serviceRow.waitFor({ state: "detached", timeout: 20_000 });

    const uuid = randomUUID();
    const kv = await bus!.bucket("controller");
    await kv.put(`AppInstanceConfig.${uuid}`, app(uuid));
    await cellBecomes(page, uuid, "state", /^RUNNING/);
    const running = await waitFor(() => statuses.get(uuid), { message: "its status" });
    expect(await page.locator(`#apps tr[data-key="${uuid}"] td.taskid`).textContent()).toBe(
      String(running.taskId),
    );
    await cellBecomes(page, uuid, "memory", /\/ 32 MiB$/, 30_000);
    await cellBecomes(page, uuid, "events", /started/, 30_000);

    // The displayName is shown exactly as written, as text: no element, no script ran.
    expect(await page.locator(`#apps tr[data-key="${uuid}"] td.name`).textContent()).toBe(HOSTILE_NAME);
    expect(await page.locator("#apps img, #apps script").count()).toBe(0);
    expect(
      await page.evaluate(() => (globalThis as unknown as { __pwned?: string }).__pwned),
    ).toBeUndefined();

    await kv.put(`AppInstanceConfig.${uuid}`, app(uuid, { activate: false }));
    await cellBecomes(page, uuid, "state", /^HALTED/);
    expect(await page.locator(`#apps tr[data-key="${uuid}"] td.taskid`).textContent()).toBe("0");
    // The same document all along: live updates, no reload.
    expect(loads).toBe(1);
    expect(
      await page.evaluate(() => (globalThis as unknown as { __sameDocument?: boolean }).__sameDocument),
    ).toBe(true);

    const shot = join(
      await artifactDir("status-page"),
      `status-page-${new Date().toISOString().replace(/[:.]/g, "-")}.png`,
    );
    await page.screenshot({ path: shot, fullPage: true });
    process.stderr.write(`[status-page] screenshot: ${shot} (chromium ${browser!.version})\n`);

    await kv.delete(`AppInstanceConfig.${uuid}`);
    await page.locator(`#apps tr[data-key="${uuid}"]`).waitFor({ state: "detached", timeout: 60_000 });
    expect(errors).toEqual([]);
    await page.close();
  }, 180_000);
});
