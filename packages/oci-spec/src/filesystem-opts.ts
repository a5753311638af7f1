/** Options for the container's root filesystem and mounts. */
import { checkAbsolutePath } from "./checks.js";
import { SpecOptionError } from "./errors.js";
import type { SpecOpt } from "./build.js";

/**
 * Makes the root filesystem read-only (or read-write with `false`); containerd's
 * `oci.WithRootFSReadonly`.
 */
export function withReadonlyRoot(readonly = true): SpecOpt {
  return (spec) => {
    spec.root = { ...spec.root, readonly };
  };
}

/** A host path to bind-mount into the container. */
export interface BindMount {
  /** Absolute host path. */
  source: string;
  /** Absolute path inside the container; not `/`. */
  destination: string;
  /** Mount it read-only; default false. */
  readOnly?: boolean;
}

/**
 * Bind-mounts a host path into the container: type `bind`, options `rbind` and `ro` or `rw`. A
 * mount already at the same destination (a default such as /dev/shm, or an earlier bind) is
 * replaced in place, so a destination is mounted once; otherwise the mount is appended, after the
 * defaults it may sit on.
 *
 * @throws {SpecOptionError} unless both paths are absolute, and for the destination `/` (the root
 *   filesystem is not a mount).
 */
export function withBindMount(mount: BindMount): SpecOpt {
  checkAbsolutePath("withBindMount", "the source", mount.source);
  checkAbsolutePath("withBindMount", "the destination", mount.destination);
  if (/^\/+$/.test(mount.destination)) {
    throw new SpecOptionError(
      "withBindMount",
      mount.destination,
      "the destination must not be '/': the root filesystem is given by the spec's root",
    );
  }
  const entry = {
    destination: mount.destination,
    type: "bind",
    source: mount.source,
    options: ["rbind", mount.readOnly ? "ro" : "rw"],
  };
  return (spec) => {
    const at = spec.mounts.findIndex((m) => m.destination === entry.destination);
    const copy = { ...entry, options: [...entry.options] };
    if (at >= 0) spec.mounts[at] = copy;
    else spec.mounts.push(copy);
  };
}
