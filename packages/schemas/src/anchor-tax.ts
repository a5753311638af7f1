/** The anchor process tax: memory a VM's qemu needs beyond the guest's RAM. */

/**
 * EVE's estimate of a VM's anchor tax in MiB: `ceil(350 + 20 + 3·vcpus + 0.025·memoryMiB)`,
 * computed in integers (`370 + 3·vcpus + ceil(memoryMiB / 40)`) so no rounding error can add a
 * MiB. It is 0 for a native container, which has no device model.
 */
export function estimateAnchorTaxMiB(resources: { memoryMiB: number; vcpus: number }): number {
  return 370 + 3 * resources.vcpus + Math.ceil(resources.memoryMiB / 40);
}

/** A task's cgroup memory limit in bytes: `(memoryMiB + taxMiB) · 2^20`. */
export function memoryLimitBytes(memoryMiB: number, anchorTaxMiB: number): number {
  return (memoryMiB + anchorTaxMiB) * 1_048_576;
}
