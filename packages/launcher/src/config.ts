/** The launcher's environment: the workers' base, except that NATS_URL and CONTAINERD_ADDRESS have no default. */
import { baseWorkerEnv, envInt, envPath } from "@eve-tasks/runtime";
import { z } from "zod";

/** Unset NATS_URL / CONTAINERD_ADDRESS mean "start a private one". */
export const launcherEnvSchema = z.object({
  ...baseWorkerEnv,
  NATS_URL: z.string().min(1).optional(),
  CONTAINERD_ADDRESS: z.string().min(1).optional(),
  /**
   * With NATS_URL: a directory of `<user>.password` files (the layout of the one `npm start`
   * makes under the data dir): the launcher connects as `admin` and gives each worker its own
   * user. Unset: the launcher connects as NATS_USER (if set) and the workers without credentials.
   */
  EVE_NATS_CREDENTIALS_DIR: envPath().optional(),
  /**
   * The status page's port on 127.0.0.1: unset = DEFAULT_UI_PORT (any free port when that is
   * taken), 0 = any free port, `off` = no page.
   */
  EVE_UI_PORT: z.union([z.literal("off"), envInt({ min: 0, max: 65535 })]).optional(),
});

/** The launcher's config. */
export type LauncherConfig = z.output<typeof launcherEnvSchema>;
