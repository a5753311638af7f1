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
  /** The private nats-server's client port; unset: 4222, or a random port when 4222 is taken. */
  EVE_NATS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  /**
   * Device mode (docs/fleet.md): the hub's leafnode URL(s), `nats-leaf://[device-<node>[:<password>]@]host:port`,
   * comma-separated for the hub's servers. The private nats-server then runs as a leaf node of the
   * hub with JetStream domain EVE_NODE, and `controller` mirrors the hub's `controller-<node>`.
   */
  EVE_HUB_LEAF_URL: z.string().min(1).optional(),
  /** The leaf user's password when EVE_HUB_LEAF_URL has none; default <EVE_DATA_DIR>/nats-credentials/hub-leaf.password. */
  EVE_HUB_LEAF_PASSWORD_FILE: envPath().optional(),
  /**
   * The status page's port on 127.0.0.1: unset = DEFAULT_UI_PORT (any free port when that is
   * taken), 0 = any free port, `off` = no page.
   */
  EVE_UI_PORT: z.union([z.literal("off"), envInt({ min: 0, max: 65535 })]).optional(),
  /**
   * Where the built-in runtime images are built and cached (per package version) before they are
   * linked into `<EVE_DATA_DIR>/tools-images`; unset: built there directly. Lets many data dirs on
   * one machine (tests, several nodes) share one build.
   */
  EVE_RUNTIME_IMAGE_CACHE: envPath().optional(),
});

/** The launcher's config. */
export type LauncherConfig = z.output<typeof launcherEnvSchema>;
