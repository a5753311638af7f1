/**
 * The spec-builder worker: turns AppInstanceConfig into node-independent TaskConfig. Run any
 * number of replicas anywhere; they share the durable `spec-builder` consumer.
 */
import { ensureBucket, waitForBucket } from "@eve-tasks/bus";
import { baseWorkerEnvSchema, runWorker } from "@eve-tasks/runtime";
import { startSpecBuilder } from "./spec-builder.js";

/** The worker's name: its NATS connection name, log `worker` field and liveness file. */
const NAME = "spec-builder";

await runWorker({
  name: NAME,
  envSchema: baseWorkerEnvSchema,
  async main({ bus, logger, lifecycle, metrics }) {
    // runWorker drains NATS after the builder has stopped (seed subscription closed, in-flight
    // builds finish).
    // Its own bucket it creates; the ones it reads may belong to someone else (with per-worker
    // NATS users, only the controller or an admin may create them), so it waits for the
    // controller's; the seeds' (hypervisor-seed-fetcher) it follows once it appears.
    await ensureBucket(bus, "spec-builder");
    await waitForBucket(bus, "controller", { signal: lifecycle.signal });
    const builder = await startSpecBuilder({ bus, logger, metrics });
    lifecycle.onShutdown("stop the work queue and the seed subscription", () => builder.stop());
  },
});
