/**
 * Worker configuration from environment variables, validated with zod.
 *
 * This module is the only place in the project that reads `process.env` (as the default of
 * {@link loadConfig}'s `env` argument). Everything else receives a frozen, typed config.
 */
import path from "node:path";
import { z } from "zod";

/** Environment variables, as `process.env` holds them. */
export type Env = Readonly<Record<string, string | undefined>>;

/** A configuration that failed validation. The message names each bad variable and why. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** One entry per problem: the variable and what is wrong with it. */
  readonly problems: readonly { readonly variable: string; readonly message: string }[];
  /** zod's own rendering of the same issues (`z.prettifyError`), for logs. */
  readonly details: string;

  constructor(
    problems: readonly { readonly variable: string; readonly message: string }[],
    details: string,
    options?: ErrorOptions,
  ) {
    super(`invalid configuration: ${problems.map((p) => `${p.variable}: ${p.message}`).join("; ")}`, options);
    this.problems = problems;
    this.details = details;
  }
}

const got = (input: unknown): string => (input === undefined ? "nothing" : JSON.stringify(input));

/**
 * An integer variable (decimal digits only), e.g. `EVE_NODE_MEMORY_MIB`.
 * Errors read `expected a positive integer, got "lots"`.
 */
export function envInt(opts: { min?: number; max?: number } = {}) {
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = opts;
  const what =
    min === 1 && max === Number.MAX_SAFE_INTEGER
      ? "a positive integer"
      : min === 0 && max === Number.MAX_SAFE_INTEGER
        ? "a non-negative integer"
        : `an integer in [${min}, ${max}]`;
  return z
    .string({ error: (iss) => `expected ${what}, got ${got(iss.input)}` })
    .refine((s) => /^[+-]?\d+$/.test(s.trim()) && Number(s) >= min && Number(s) <= max, {
      error: (iss) => `expected ${what}, got ${got(iss.input)}`,
    })
    .transform((s) => Number(s));
}

/** A positive integer variable (`>= 1`). */
export const envPositiveInt = () => envInt({ min: 1 });

/** A boolean variable: true/false, yes/no, 1/0, on/off (zod's `stringbool`). */
export const envBool = () =>
  z.stringbool({ error: (iss) => `expected true/false, yes/no, 1/0 or on/off, got ${got(iss.input)}` });

/** A list variable split on `separator` (`:` for paths, `,` for hosts); empty items are dropped. */
export const envList = (separator: string) =>
  z.string().transform((s) =>
    s
      .split(separator)
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  );

/** A filesystem path variable, resolved to an absolute path against the working directory. */
export const envPath = () =>
  z
    .string()
    .min(1)
    .transform((p) => path.resolve(p));

/** pino's level names, plus `silent`. */
export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
/** A log level name. */
export type LogLevel = (typeof logLevels)[number];

/**
 * The variables every worker reads. Workers extend it:
 * `z.object({ ...baseWorkerEnv, EVE_ACCEL: z.enum(["auto", "kvm", "tcg"]).default("auto") })`.
 */
export const baseWorkerEnv = {
  /** Where the bus is. */
  NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222"),
  /**
   * The NATS user this process connects as (the worker's own, e.g. `spec-builder`), with
   * NATS_PASSWORD_FILE or NATS_PASSWORD. Unset: no credentials (a server that asks for none).
   */
  NATS_USER: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, { error: (iss) => `expected letters, digits, - or _, got ${got(iss.input)}` })
    .optional(),
  /** A file holding NATS_USER's password (read at each connect; the launcher's are mode 0600). */
  NATS_PASSWORD_FILE: envPath().optional(),
  /** NATS_USER's password itself, when it cannot be a file. */
  NATS_PASSWORD: z.string().min(1).optional(),
  /** The data dir (task logs, seeds, stores), resolved to an absolute path. */
  EVE_DATA_DIR: envPath().prefault("./.data"),
  /** This node's name: the executor ignores other nodes' apps. */
  EVE_NODE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, { error: (iss) => `expected letters, digits, - or _, got ${got(iss.input)}` })
    .default("local"),
  /** A short dir for sockets and liveness files (unix socket paths are capped at 108 bytes). */
  EVE_RUN_DIR: envPath().prefault("/run/eve-tasks"),
  /** pino level. */
  LOG_LEVEL: z
    .enum(logLevels, { error: (iss) => `expected one of ${logLevels.join("|")}, got ${got(iss.input)}` })
    .default("info"),
};

/** How to connect to NATS: what @eve-tasks/bus's `connectBus` takes as `servers` and `credentials`. */
export interface NatsConnectionSettings {
  readonly servers: string;
  readonly credentials?:
    | { readonly user: string; readonly password: string }
    | { readonly user: string; readonly passwordFile: string };
}

/**
 * The NATS settings of a config: NATS_URL, and NATS_USER with NATS_PASSWORD_FILE or NATS_PASSWORD.
 *
 * @throws {ConfigError} when a password comes without a user, a user without a password, or
 *   both NATS_PASSWORD and NATS_PASSWORD_FILE are set.
 */
export function natsConnection(config: {
  readonly NATS_URL: string;
  readonly NATS_USER?: string | undefined;
  readonly NATS_PASSWORD?: string | undefined;
  readonly NATS_PASSWORD_FILE?: string | undefined;
}): NatsConnectionSettings {
  const {
    NATS_URL: servers,
    NATS_USER: user,
    NATS_PASSWORD: password,
    NATS_PASSWORD_FILE: passwordFile,
  } = config;
  const problems: { variable: string; message: string }[] = [];
  if (password !== undefined && passwordFile !== undefined) {
    problems.push({
      variable: "NATS_PASSWORD",
      message: "set NATS_PASSWORD or NATS_PASSWORD_FILE, not both",
    });
  }
  if (user === undefined && (password !== undefined || passwordFile !== undefined)) {
    problems.push({ variable: "NATS_USER", message: "required with a NATS password, not set" });
  }
  if (user !== undefined && password === undefined && passwordFile === undefined) {
    problems.push({
      variable: "NATS_PASSWORD_FILE",
      message: `required with NATS_USER (or NATS_PASSWORD), not set`,
    });
  }
  if (problems.length > 0) {
    throw new ConfigError(problems, problems.map((p) => `✖ ${p.message}\n  → at ${p.variable}`).join("\n"));
  }
  if (user === undefined) return { servers };
  return {
    servers,
    credentials: passwordFile !== undefined ? { user, passwordFile } : { user, password: password ?? "" },
  };
}

/**
 * The task-executor's node policy and task logs (DESIGN "Trust", "Operator surface"); the
 * executor's worker spreads them into its env schema. Defaults suit `npm start`; the systemd
 * units' `eve-tasks.env` turns the host root off.
 */
export const executorNodeEnv = {
  /** A task may have the host's `/` (read-only) as its root. */
  EVE_ALLOW_HOST_ROOT: envBool().default(true),
  /** Devices tasks may be given (comma-separated names: `kvm`, `tun`); empty = none. */
  EVE_ALLOW_DEVICES: envList(",").default(["kvm", "tun"]),
  /** A task's console.log is rotated before it grows over this many bytes. */
  EVE_LOG_MAX_BYTES: envInt({ min: 4096 }).default(10 * 2 ** 20),
  /** How many log files a task keeps: console.log and console.log.1 … console.log.<N-1>. */
  EVE_LOG_FILES: envInt({ min: 1, max: 1000 }).default(5),
};

/** The base worker env as an object schema. */
export const baseWorkerEnvSchema = z.object(baseWorkerEnv);

/** The config every worker has (what {@link baseWorkerEnv} yields). */
export type BaseWorkerConfig = z.output<typeof baseWorkerEnvSchema>;

/**
 * Validates `env` against `schema` and returns the frozen, typed result.
 *
 * Variables set to the empty string count as unset, so `NATS_URL= npm start` means the default.
 * Variables the schema does not name are ignored.
 *
 * @throws {ConfigError} naming every bad variable, e.g.
 *   `invalid configuration: EVE_NODE_MEMORY_MIB: expected a positive integer, got "lots"`.
 */
export function loadConfig<S extends z.ZodObject>(schema: S, env: Env = process.env): Readonly<z.output<S>> {
  const input: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== "") input[key] = value;
  }
  const result = schema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => ({
      variable: issue.path.length > 0 ? issue.path.map(String).join(".") : "(environment)",
      message:
        issue.code === "invalid_type" && issue.input === undefined ? "required, not set" : issue.message,
    }));
    throw new ConfigError(problems, z.prettifyError(result.error), { cause: result.error });
  }
  return Object.freeze(result.data);
}
