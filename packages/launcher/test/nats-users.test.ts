// Which NATS user the launcher and each worker connect as (pure).
import { describe, expect, it } from "vitest";
import { planNatsUsers, workerNatsEnv } from "../src/nats-users.js";

const base = {
  PATH: "/usr/bin",
  NATS_URL: "nats://127.0.0.1:4222",
  NATS_USER: "admin",
  NATS_PASSWORD: "the-launcher's",
  NATS_PASSWORD_FILE: "/root/admin.password",
};

describe("NATS users of the launcher and its workers", () => {
  it("with a credentials dir: the launcher is admin, each worker its own user and file", () => {
    const plan = planNatsUsers({ credentialsDir: "/d/nats-credentials", given: undefined });
    expect(plan.launcher).toEqual({ user: "admin", passwordFile: "/d/nats-credentials/admin.password" });
    expect(workerNatsEnv(plan, "task-executor", base)).toEqual({
      PATH: "/usr/bin",
      NATS_URL: "nats://127.0.0.1:4222",
      NATS_USER: "task-executor",
      NATS_PASSWORD_FILE: "/d/nats-credentials/task-executor.password",
    });
  });

  it("never hands a worker someone else's credentials: unknown workers, and admin/controller/viewer by name, get none", () => {
    const plan = planNatsUsers({ credentialsDir: "/d/nats-credentials", given: undefined });
    for (const name of ["status-page", "admin", "controller", "viewer"]) {
      expect(workerNatsEnv(plan, name, base), name).toEqual({
        PATH: "/usr/bin",
        NATS_URL: "nats://127.0.0.1:4222",
      });
    }
  });

  it("without one: the launcher uses what it was given, the workers connect without credentials", () => {
    const given = { user: "admin", password: "x" };
    const plan = planNatsUsers({ credentialsDir: undefined, given });
    expect(plan.launcher).toBe(given);
    expect(workerNatsEnv(plan, "spec-builder", base)).toEqual({
      PATH: "/usr/bin",
      NATS_URL: "nats://127.0.0.1:4222",
    });
  });
});
