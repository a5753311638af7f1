// Which NATS user the CLI connects as (no server needed: only the decision is tested here; the
// connections themselves are in test/nats-auth.test.ts and test/launcher.test.ts).
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError, cliCredentials, isLoopbackServer, natsTarget } from "../src/index.js";

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "eve-cli-creds-"));
  await mkdir(path.join(dataDir, "nats-credentials"), { mode: 0o700 });
  for (const user of ["viewer", "controller"]) {
    await writeFile(path.join(dataDir, "nats-credentials", `${user}.password`), "p0123456789abcdef\n", {
      mode: 0o600,
    });
  }
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

describe("the CLI's NATS user", () => {
  it("knows loopback servers (where npm start's nats-server listens)", () => {
    expect(isLoopbackServer("nats://127.0.0.1:4222")).toBe(true);
    expect(isLoopbackServer("127.0.0.1:4222,nats://localhost:4223")).toBe(true);
    expect(isLoopbackServer("nats://[::1]:4222")).toBe(true);
    expect(isLoopbackServer("nats://10.0.0.5:4222")).toBe(false);
    expect(isLoopbackServer("nats://127.0.0.1:4222,nats://hub.example:4222")).toBe(false);
  });

  it("uses npm start's credentials on loopback: viewer to read, controller to write", async () => {
    const env = { EVE_DATA_DIR: dataDir };
    const read = await cliCredentials(natsTarget("nats://127.0.0.1:4222", env, "read"));
    expect(read.credentials).toEqual({
      user: "viewer",
      passwordFile: path.join(dataDir, "nats-credentials", "viewer.password"),
    });
    const write = await cliCredentials(natsTarget(undefined, env, "write"));
    expect(write.credentials).toEqual({
      user: "controller",
      passwordFile: path.join(dataDir, "nats-credentials", "controller.password"),
    });
  });

  it("never sends them to another server, nor invents any", async () => {
    const elsewhere = await cliCredentials(
      natsTarget("nats://10.0.0.5:4222", { EVE_DATA_DIR: dataDir }, "read"),
    );
    expect(elsewhere).toEqual({ how: "without credentials" });
    const noDir = await cliCredentials(
      natsTarget(undefined, { EVE_DATA_DIR: path.join(dataDir, "missing") }, "read"),
    );
    expect(noDir).toEqual({ how: "without credentials" });
    const inUrl = await cliCredentials(
      natsTarget("nats://u:p@127.0.0.1:4222", { EVE_DATA_DIR: dataDir }, "read"),
    );
    expect(inUrl).toEqual({ how: "with the credentials in the URL" });
  });

  it("takes NATS_USER with NATS_PASSWORD_FILE or NATS_PASSWORD first, and refuses half of them", async () => {
    const env = { EVE_DATA_DIR: dataDir, NATS_USER: "controller", NATS_PASSWORD_FILE: "/etc/c.password" };
    expect((await cliCredentials(natsTarget(undefined, env, "read"))).credentials).toEqual({
      user: "controller",
      passwordFile: "/etc/c.password",
    });
    await expect(cliCredentials(natsTarget(undefined, { NATS_USER: "viewer" }, "read"))).rejects.toThrow(
      UserError,
    );
    await expect(cliCredentials(natsTarget(undefined, { NATS_USER: "viewer" }, "read"))).rejects.toThrow(
      /NATS_PASSWORD_FILE: required with NATS_USER/,
    );
  });
});
