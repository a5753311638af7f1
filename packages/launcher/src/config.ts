/** The launcher's environment: the workers' base, except that NATS_URL and CONTAINERD_ADDRESS have no default. */
import { baseWorkerEnv, envPath } from "@eve-tasks/runtime";
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
   * Where the built-in runtime images are built and cached (per package version) before they are
   * linked into `<EVE_DATA_DIR>/tools-images`; unset: built there directly. Lets many data dirs on
   * one machine (tests, several nodes) share one build.
   */
  EVE_RUNTIME_IMAGE_CACHE: envPath().optional(),
});

/** The launcher's config. */
export type LauncherConfig = z.output<typeof launcherEnvSchema>;
