/** The launcher's environment: the workers' base, except that NATS_URL and CONTAINERD_ADDRESS have no default. */
import { baseWorkerEnv } from "@eve-tasks/runtime";
import { z } from "zod";

/** Unset NATS_URL / CONTAINERD_ADDRESS mean "start a private one". */
export const launcherEnvSchema = z.object({
  ...baseWorkerEnv,
  NATS_URL: z.string().min(1).optional(),
  CONTAINERD_ADDRESS: z.string().min(1).optional(),
});

/** The launcher's config. */
export type LauncherConfig = z.output<typeof launcherEnvSchema>;
