/** Options for the container's cgroup limits. */
import { checkWholeNumber } from "./checks.js";
import { SpecOptionError } from "./errors.js";
import type { SpecOpt } from "./build.js";

/** The CFS period every CPU limit uses, in microseconds (100 ms). */
export const CPU_PERIOD_US = 100_000;

/**
 * Sets the memory limit (`memory.max` of the task's cgroup) in bytes (containerd's
 * `oci.WithMemoryLimit`). Swap is left to the runtime's default.
 *
 * @throws {SpecOptionError} unless `bytes` is a whole number ≥ 1.
 */
export function withMemoryLimitBytes(bytes: number): SpecOpt {
  checkWholeNumber("withMemoryLimitBytes", "the memory limit in bytes", bytes, 1);
  return (spec) => {
    spec.linux.resources.memory = { ...spec.linux.resources.memory, limit: bytes };
  };
}

/**
 * Limits the container to `vcpus` CPUs' worth of time: CFS period {@link CPU_PERIOD_US} and quota
 * `period × vcpus` (containerd's `oci.WithCPUCFS`). Fractions are allowed (0.5 is half a CPU);
 * the quota is rounded to a whole microsecond and must be at least 1 ms, the kernel's minimum.
 *
 * @throws {SpecOptionError} for a value that is not a finite number giving a quota ≥ 1000 µs.
 */
export function withCpus(vcpus: number): SpecOpt {
  const quota = Math.round(CPU_PERIOD_US * vcpus);
  if (typeof vcpus !== "number" || !Number.isFinite(vcpus) || !Number.isSafeInteger(quota) || quota < 1000) {
    throw new SpecOptionError(
      "withCpus",
      vcpus,
      `vcpus must be a number of at least 0.01 (a quota of 1 ms per ${CPU_PERIOD_US / 1000} ms); got ${String(vcpus)}`,
    );
  }
  return (spec) => {
    spec.linux.resources.cpu = { ...spec.linux.resources.cpu, period: CPU_PERIOD_US, quota };
  };
}
