import path from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ConfigError,
  baseWorkerEnv,
  baseWorkerEnvSchema,
  envBool,
  envList,
  envPositiveInt,
  loadConfig,
  natsConnection,
} from "../src/index.js";

const schema = z.object({
  ...baseWorkerEnv,
  EVE_NODE_MEMORY_MIB: envPositiveInt().optional(),
  EVE_INSECURE_REGISTRIES: envList(",").default([]),
  EVE_FLAG: envBool().default(false),
});

describe("loadConfig", () => {
  it("applies the base defaults and resolves EVE_DATA_DIR to an absolute path", () => {
    const config = loadConfig(baseWorkerEnvSchema, {});
    expect(config).toEqual({
      NATS_URL: "nats://127.0.0.1:4222",
      EVE_DATA_DIR: path.resolve(".data"),
      EVE_NODE: "local",
      EVE_RUN_DIR: "/run/eve-tasks",
      EVE_METRICS_PORT: 0,
      LOG_LEVEL: "info",
    });
    expect(loadConfig(baseWorkerEnvSchema, { EVE_DATA_DIR: "rel/dir" }).EVE_DATA_DIR).toBe(
      path.resolve("rel/dir"),
    );
  });

  it("returns a frozen, typed config and ignores unrelated variables", () => {
    const config = loadConfig(schema, {
      EVE_NODE_MEMORY_MIB: "2048",
      EVE_INSECURE_REGISTRIES: "a:5000, b:5000,",
      EVE_FLAG: "yes",
      HOME: "/root",
    });
    expect(config.EVE_NODE_MEMORY_MIB).toBe(2048);
    expect(config.EVE_INSECURE_REGISTRIES).toEqual(["a:5000", "b:5000"]);
    expect(config.EVE_FLAG).toBe(true);
    expect(Object.isFrozen(config)).toBe(true);
    expect(config).not.toHaveProperty("HOME");
  });

  it("treats an empty variable as unset", () => {
    const config = loadConfig(schema, { NATS_URL: "", EVE_NODE_MEMORY_MIB: "" });
    expect(config.NATS_URL).toBe("nats://127.0.0.1:4222");
    expect(config.EVE_NODE_MEMORY_MIB).toBeUndefined();
  });

  it("names the bad variable and why", () => {
    let caught: unknown;
    try {
      loadConfig(schema, { EVE_NODE_MEMORY_MIB: "lots" });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const err = caught as ConfigError;
    expect(err.message).toBe(
      'invalid configuration: EVE_NODE_MEMORY_MIB: expected a positive integer, got "lots"',
    );
    expect(err.problems).toEqual([
      { variable: "EVE_NODE_MEMORY_MIB", message: 'expected a positive integer, got "lots"' },
    ]);
    expect(err.details).toContain("EVE_NODE_MEMORY_MIB");
  });

  it("lists every bad variable", () => {
    const err = (() => {
      try {
        loadConfig(schema, {
          EVE_NODE_MEMORY_MIB: "0",
          LOG_LEVEL: "loud",
          EVE_FLAG: "maybe",
          EVE_NODE: "a b",
        });
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error("no error");
    })();
    expect(err.problems.map((p) => p.variable).sort()).toEqual([
      "EVE_FLAG",
      "EVE_NODE",
      "EVE_NODE_MEMORY_MIB",
      "LOG_LEVEL",
    ]);
    expect(err.message).toContain('EVE_NODE_MEMORY_MIB: expected a positive integer, got "0"');
    expect(err.message).toContain(
      'LOG_LEVEL: expected one of fatal|error|warn|info|debug|trace|silent, got "loud"',
    );
    expect(err.message).toContain('EVE_FLAG: expected true/false, yes/no, 1/0 or on/off, got "maybe"');
  });

  it("says when a required variable is missing", () => {
    expect(() => loadConfig(z.object({ EVE_REQUIRED: z.string() }), {})).toThrow(
      "invalid configuration: EVE_REQUIRED: required, not set",
    );
  });
});

describe("natsConnection: NATS_USER with NATS_PASSWORD_FILE or NATS_PASSWORD", () => {
  const load = (env: Record<string, string>) => natsConnection(loadConfig(baseWorkerEnvSchema, env));

  it("connects without credentials when none are set", () => {
    expect(load({})).toEqual({ servers: "nats://127.0.0.1:4222" });
  });

  it("takes a user with a password file (resolved to an absolute path) or a password", () => {
    expect(load({ NATS_USER: "spec-builder", NATS_PASSWORD_FILE: "creds/spec-builder.password" })).toEqual({
      servers: "nats://127.0.0.1:4222",
      credentials: { user: "spec-builder", passwordFile: path.resolve("creds/spec-builder.password") },
    });
    expect(load({ NATS_URL: "nats://n:4222", NATS_USER: "viewer", NATS_PASSWORD: "pw" })).toEqual({
      servers: "nats://n:4222",
      credentials: { user: "viewer", password: "pw" },
    });
  });

  it("refuses half or doubled credentials, naming the variable", () => {
    const problems = (env: Record<string, string>): unknown => {
      try {
        load(env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).problems;
      }
      return "no error";
    };
    expect(problems({ NATS_PASSWORD_FILE: "/x" })).toEqual([
      { variable: "NATS_USER", message: "required with a NATS password, not set" },
    ]);
    expect(problems({ NATS_USER: "viewer" })).toEqual([
      { variable: "NATS_PASSWORD_FILE", message: "required with NATS_USER (or NATS_PASSWORD), not set" },
    ]);
    expect(problems({ NATS_USER: "viewer", NATS_PASSWORD: "a", NATS_PASSWORD_FILE: "/x" })).toEqual([
      { variable: "NATS_PASSWORD", message: "set NATS_PASSWORD or NATS_PASSWORD_FILE, not both" },
    ]);
    expect(() => load({ NATS_USER: "a b" })).toThrow(
      /NATS_USER: expected letters, digits, - or _, got "a b"/,
    );
  });
});
