/**
 * Debian's chromium driven by playwright-core (which never downloads a browser): a fresh profile
 * per call, headless, no sandbox (tests run as root), nothing it would fetch on its own (QUIC,
 * component updates, sync, background networking). Installed by `npm test`'s prerequisites
 * (`chromium`), not by `npm start`'s.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { BrowserContext } from "playwright-core";
import { removeTreeSafely } from "@eve-tasks/embedded";
import { REPO_ROOT } from "./e2e.js";

/** Debian's chromium. */
export const CHROMIUM = "/usr/bin/chromium";

/** The switches every test browser runs with. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
] as const;

/** A browser with a fresh profile; `close()` ends it and removes the profile. */
export interface TestBrowser {
  readonly context: BrowserContext;
  readonly version: string;
  close(): Promise<void>;
}

/** Starts chromium with a fresh `--user-data-dir` (a temp dir). */
export async function launchChromium(): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (npm run prerequisites -- --tests)`);
  }
  const profile = await mkdtemp("/tmp/evchrome-");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS],
    viewport: { width: 1400, height: 900 },
  });
  const version = context.browser()?.version() ?? "unknown";
  return {
    context,
    version,
    async close() {
      await context.close();
      await removeTreeSafely(profile);
    },
  };
}

/** `<repo>/test-artifacts/<name>` (ignored by git), made if missing. */
export async function artifactDir(name: string): Promise<string> {
  const dir = join(REPO_ROOT, "test-artifacts", name);
  await mkdir(dir, { recursive: true });
  return dir;
}
