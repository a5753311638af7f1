// @eve-tasks/embedded's NATS users: the permissions (one source for `npm start` and deploy/), the
// passwords it generates once under the data dir, and a nats-server started with them.
import { chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import {
  NATS_PASSWORD_PATTERN,
  NATS_USERS,
  NatsCredentialsStoreError,
  ensureNatsCredentials,
  natsPasswordFile,
  natsPermissions,
  prepareNatsAuth,
  renderNatsPermissions,
  startNatsServer,
} from "@eve-tasks/embedded";
import { connectBus } from "@eve-tasks/bus";
import { natsInboxPrefix, seedFetcherDurables } from "@eve-tasks/schemas";
import { deferCleanup, harnessEnv, tempDir } from "./harness/index.js";

describe("NATS permissions", () => {
  it("gives every user but admin its own inbox prefix and nothing else of _INBOX", () => {
    for (const u of natsPermissions({ nodes: ["local"] })) {
      if (u.user === "admin") {
        expect(u.permissions).toBeUndefined();
        continue;
      }
      const subscribe = u.permissions!.subscribeAllow.flatMap((g) => g.subjects);
      expect(
        subscribe.filter((s) => s.startsWith("_INBOX")),
        u.user,
      ).toEqual([`${natsInboxPrefix(u.user)}.>`]);
    }
  });

  it("denies controller and viewer every worker's durable, for each node named", () => {
    const users = natsPermissions({ nodes: ["local", "edge-2", "local"] });
    for (const who of ["controller", "viewer"] as const) {
      const deny = users.find((u) => u.user === who)!.permissions!.publishDeny.flatMap((g) => g.subjects);
      for (const durable of [
        "spec-builder",
        ...Object.values(seedFetcherDurables("local")),
        ...Object.values(seedFetcherDurables("edge-2")),
      ]) {
        for (const subject of [
          `$JS.API.CONSUMER.CREATE.KV_controller.${durable}`,
          `$JS.API.CONSUMER.CREATE.KV_controller.${durable}.>`,
          `$JS.API.CONSUMER.MSG.NEXT.KV_controller.${durable}`,
          `$JS.*.API.CONSUMER.CREATE.KV_controller.${durable}`,
        ]) {
          expect(deny, `${who}: ${subject}`).toContain(subject);
        }
      }
      // A node named twice is listed once.
      expect(new Set(deny).size).toBe(deny.length);
    }
    expect(renderNatsPermissions({ nodes: ["b", "a"] })).toContain("for the nodes: b, a.");
  });

  it("refuses a node name that could not be a consumer name", () => {
    for (const bad of ["a.b", "a b", "*", ">", ""]) {
      expect(() => renderNatsPermissions({ nodes: [bad] }), bad).toThrow(/invalid node name/);
    }
  });
});

describe("NATS credentials under the data dir", () => {
  it("generates each password once, 0600 in a 0700 dir, and keeps it across starts", async () => {
    const dir = join(await tempDir("creds-"), "nats-credentials");
    const first = await ensureNatsCredentials(dir);
    expect([...first.keys()]).toEqual([...NATS_USERS]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    for (const [user, password] of first) {
      expect(password).toMatch(NATS_PASSWORD_PATTERN);
      const file = natsPasswordFile(dir, user);
      expect(await readFile(file, "utf8")).toBe(`${password}\n`);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    }
    expect(new Set(first.values()).size).toBe(NATS_USERS.length);
    // Loosened modes are tightened again; the passwords stay.
    await chmod(dir, 0o755);
    await chmod(natsPasswordFile(dir, "viewer"), 0o644);
    const second = await ensureNatsCredentials(dir);
    expect(second).toEqual(first);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(natsPasswordFile(dir, "viewer"))).mode & 0o777).toBe(0o600);
  });

  it("refuses a file holding no usable password, and a directory that is someone else's", async () => {
    const dir = join(await tempDir("creds-"), "nats-credentials");
    await ensureNatsCredentials(dir);
    for (const bad of ["", "8e1234567890123456", "short1", "has space in it 0123"]) {
      await writeFile(natsPasswordFile(dir, "controller"), bad);
      const err = await ensureNatsCredentials(dir).catch((e: unknown) => e);
      expect(err, JSON.stringify(bad)).toBeInstanceOf(NatsCredentialsStoreError);
      expect((err as Error).message).toMatch(
        /controller\.password does not hold a usable password for NATS user controller.*delete the file/,
      );
    }
    const foreign = join(await tempDir("creds-"), "nats-credentials");
    await mkdir(foreign, { mode: 0o700 });
    await chown(foreign, 65534, 65534);
    await expect(ensureNatsCredentials(foreign)).rejects.toThrow(/must be a directory owned by this user/);
  });

  it("runs nats-server with them: each user gets in with its password, nobody without", async () => {
    const data = await tempDir("nats-auth-");
    const auth = await prepareNatsAuth({
      credentialsDir: join(data, "nats-credentials"),
      configDir: join(data, "nats"),
      nodes: ["local"],
    });
    expect(await readFile(auth.permissionsFile, "utf8")).toBe(renderNatsPermissions({ nodes: ["local"] }));
    expect(await readFile(auth.configFile, "utf8")).toMatch(/^include \.\/permissions\.conf$/m);
    const server = await startNatsServer({
      storeDir: join(data, "nats"),
      configFile: auth.configFile,
      env: auth.env,
    });
    deferCleanup(() => server.stop());
    await expect(connect({ servers: server.url })).rejects.toThrow(/Authorization Violation/);
    for (const user of NATS_USERS) {
      const pass = (await readFile(auth.passwordFile(user), "utf8")).trim();
      const nc = await connect({ servers: server.url, user, pass, inboxPrefix: natsInboxPrefix(user) });
      await nc.close();
      await expect(connect({ servers: server.url, user, pass: `${pass}x` }), user).rejects.toThrow(
        /Authorization Violation/,
      );
    }
  });
});

describe("a worker given its credentials, on a server that asks for none", () => {
  it("connects, reads, writes and gets its replies on its own inbox prefix", async () => {
    const dir = join(await tempDir("creds-"), "nats-credentials");
    await ensureNatsCredentials(dir, ["task-executor"]);
    // The harness's shared nats-server has no authorization block.
    const bus = await connectBus({
      servers: harnessEnv().natsUrl,
      name: "creds-on-open-server",
      credentials: { user: "task-executor", passwordFile: natsPasswordFile(dir, "task-executor") },
    });
    deferCleanup(() => bus.close());
    const replyTo: string[] = [];
    const reply = bus.nc.subscribe("nats-auth.echo", {
      callback: (_e, m) => {
        replyTo.push(m.reply ?? "");
        m.respond(m.data);
      },
    });
    const answer = await bus.nc.request("nats-auth.echo", "hi", { timeout: 2000 });
    expect(answer.string()).toBe("hi");
    expect(replyTo[0]).toMatch(/^_INBOX_task-executor\./);
    reply.unsubscribe();
    await expect(bus.jsm.getAccountInfo()).resolves.toBeDefined();
  });
});
