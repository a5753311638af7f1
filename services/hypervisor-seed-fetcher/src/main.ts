#!/usr/bin/env node
// hypervisor-seed-fetcher: per node; replicas on a node share the work. Wiring only: config → bus,
// seed store → the fetcher in ./seed-fetcher.ts.
import { z } from "zod";
import { ensureBucket, waitForBucket } from "@eve-tasks/bus";
import { registryEnv, seedStoreFromEnv } from "@eve-tasks/registry";
import { baseWorkerEnv, envInt, runWorker } from "@eve-tasks/runtime";
import { startSeedFetcher } from "./seed-fetcher.js";

const NAME = "hypervisor-seed-fetcher";

const envSchema = z.object({
  ...baseWorkerEnv,
  ...registryEnv,
  /** A seed or blob is removed only when unused for this long (default 10 minutes). */
  EVE_SEED_GC_GRACE_MS: envInt({ min: 0 }).default(600_000),
  /** How often the garbage collection runs besides after changes (default 1 minute). */
  EVE_SEED_GC_INTERVAL_MS: envInt({ min: 100 }).default(60_000),
});

await runWorker({
  name: NAME,
  envSchema,
  // A pull in progress is abandoned at a stop (its blob stays unverified in ingest/, then removed).
  graceMs: 10_000,
  async main({ config, logger, lifecycle, bus, metrics }) {
    const seeds = await seedStoreFromEnv(config.EVE_DATA_DIR, config, {
      onWarning: (message) => logger.warn({ event: "unpack-warning" }, message),
    });
    await ensureBucket(bus, NAME);
    await waitForBucket(bus, "controller", { signal: lifecycle.signal });
    const fetcher = await startSeedFetcher({
      bus,
      logger,
      node: config.EVE_NODE,
      seeds,
      gcGraceMs: config.EVE_SEED_GC_GRACE_MS,
      gcIntervalMs: config.EVE_SEED_GC_INTERVAL_MS,
      signal: lifecycle.signal,
      metrics,
    });
    lifecycle.onShutdown("stop the work queues", () => fetcher.stop());
    logger.info(
      {
        event: "started",
        dataDir: config.EVE_DATA_DIR,
        insecureRegistries: config.EVE_INSECURE_REGISTRIES ?? [],
      },
      "seed fetcher following HypervisorToolsConfig and AppInstanceConfig",
    );
  },
});
