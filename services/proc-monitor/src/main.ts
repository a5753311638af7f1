#!/usr/bin/env node
// proc-monitor: one per node, read-only. Wiring only: config → bus, outbox, cgroup layout →
// the loop in proc-monitor.ts, which reads /proc and cgroupfs through @eve-tasks/procfs.
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { Outbox, ensureBucket, ensureEventsStream, waitForBucket } from "@eve-tasks/bus";
import { detectCgroupLayout } from "@eve-tasks/procfs";
import { baseWorkerEnv, envInt, runWorker } from "@eve-tasks/runtime";
import { ProcMonitor } from "./proc-monitor.js";

/** The worker's name: its NATS connection name, bucket, log `worker` field and liveness file. */
const NAME = "proc-monitor";

const envSchema = z.object({
  ...baseWorkerEnv,
  /** How often each running task is sampled and its TaskMetrics published, in ms (100 ms to 1 h). */
  EVE_METRICS_INTERVAL_MS: envInt({ min: 100, max: 3_600_000 }).default(5000),
});

await runWorker({
  name: NAME,
  envSchema,
  async main({ config, logger, lifecycle, bus, metrics }) {
    const layout = detectCgroupLayout();
    logger.info({ event: "cgroup-layout", layout }, `cgroup v${layout.version}`);

    // Its own bucket it creates; the one it reads it waits for (see the spec-builder). Until the
    // events stream exists (an admin may have to create it), events wait in the outbox. The
    // spec-builder's bucket (TaskConfig, for VMs' AnchorTax records) the monitor waits for itself,
    // in the background.
    await ensureBucket(bus, NAME);
    await waitForBucket(bus, "task-executor", { signal: lifecycle.signal });
    await ensureEventsStream(bus).catch((err: unknown) =>
      logger.warn({ err }, "cannot create the TASK_EVENTS stream; events stay in the outbox until it exists"),
    );
    const outbox = await Outbox.open(bus, { file: join(config.EVE_DATA_DIR, "outbox", `${NAME}.jsonl`) });
    lifecycle.onShutdown("flush and close the event outbox", async () => {
      await Promise.race([outbox.flushed(), sleep(2000)]);
      await outbox.close();
    });

    const monitor = new ProcMonitor({
      bus,
      outbox,
      logger,
      node: config.EVE_NODE,
      intervalMs: config.EVE_METRICS_INTERVAL_MS,
      layout,
      metrics,
    });
    lifecycle.onShutdown("stop sampling", () => monitor.stop());
    await monitor.start();
  },
});
