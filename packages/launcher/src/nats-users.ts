/**
 * Which NATS user the launcher and each worker connect as. Decided here (pure), applied by the
 * launcher: each worker whose name is a worker's NATS user gets NATS_USER and NATS_PASSWORD_FILE pointing
 * at its own password file; any other worker, or every worker when there are no credentials, gets
 * none (NATS credentials the launcher itself was given never reach a worker).
 */
import { isNatsWorkerUser, natsPasswordFile } from "@eve-tasks/embedded";
import type { NatsConnectionSettings } from "@eve-tasks/runtime";

/** The variables that carry NATS credentials into a worker. */
export const NATS_CREDENTIAL_VARIABLES = ["NATS_USER", "NATS_PASSWORD", "NATS_PASSWORD_FILE"] as const;

/** Who connects as whom. */
export interface NatsUsersPlan {
  /** The launcher's own connection (bucket creation, the tools image, the apps view). */
  readonly launcher: NatsConnectionSettings["credentials"];
  /** Where the password files are; undefined: no credentials for the workers. */
  readonly credentialsDir: string | undefined;
}

/**
 * The plan: with a credentials directory (the one `npm start` generated, or EVE_NATS_CREDENTIALS_DIR
 * next to NATS_URL) the launcher is `admin`; without, it uses what it was given (NATS_USER...).
 */
export function planNatsUsers(o: {
  credentialsDir: string | undefined;
  given: NatsConnectionSettings["credentials"];
}): NatsUsersPlan {
  if (o.credentialsDir === undefined) return { launcher: o.given, credentialsDir: undefined };
  return {
    launcher: { user: "admin", passwordFile: natsPasswordFile(o.credentialsDir, "admin") },
    credentialsDir: o.credentialsDir,
  };
}

/**
 * Worker `name`'s environment: `base` without any NATS credentials, plus its own user and
 * password file when the plan has credentials and `name` is a worker's NATS user.
 */
export function workerNatsEnv(plan: NatsUsersPlan, name: string, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const v of NATS_CREDENTIAL_VARIABLES) delete env[v];
  if (plan.credentialsDir !== undefined && isNatsWorkerUser(name)) {
    env.NATS_USER = name;
    env.NATS_PASSWORD_FILE = natsPasswordFile(plan.credentialsDir, name);
  }
  return env;
}
