import { inject } from "vitest";
// Brings in the `declare module "vitest"` ProvidedContext augmentation (types only).
import type {} from "./global-setup.js";

/** What the global setup started for this run. */
export interface HarnessEnv {
  /** Client URL of the shared nats-server (JetStream on). */
  natsUrl: string;
  /** gRPC unix socket of the shared private containerd. */
  containerdAddress: string;
  /** The run's temp directory. */
  harnessDir: string;
}

/** The shared services' endpoints, from the global setup (vitest `inject`). */
export function harnessEnv(): HarnessEnv {
  return {
    natsUrl: inject("natsUrl"),
    containerdAddress: inject("containerdAddress"),
    harnessDir: inject("harnessDir"),
  };
}
