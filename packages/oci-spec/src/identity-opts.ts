/** Options naming the container: its hostname and annotations. */
import { SpecOptionError } from "./errors.js";
import type { SpecOpt } from "./build.js";

/**
 * Sets the container's hostname (its own UTS namespace is in the default spec); containerd's
 * `oci.WithHostname`.
 *
 * @throws {SpecOptionError} for an empty name, a name over 64 characters (the kernel's limit) or
 *   one with NUL or whitespace.
 */
export function withHostname(hostname: string): SpecOpt {
  if (
    typeof hostname !== "string" ||
    hostname.length === 0 ||
    hostname.length > 64 ||
    /[\s\0]/.test(hostname)
  ) {
    throw new SpecOptionError(
      "withHostname",
      hostname,
      `the hostname must be 1 to 64 characters without whitespace or NUL; got ${JSON.stringify(hostname)}`,
    );
  }
  return (spec) => {
    spec.hostname = hostname;
  };
}

/**
 * Adds annotations (string keys and values), replacing those with the same keys; containerd's
 * `oci.WithAnnotations`.
 *
 * @throws {SpecOptionError} for an empty key or a value that is not a string.
 */
export function withAnnotations(annotations: Readonly<Record<string, string>>): SpecOpt {
  const entries = Object.entries(annotations);
  for (const [key, value] of entries) {
    if (key === "") throw new SpecOptionError("withAnnotations", key, "annotation keys must not be empty");
    if (typeof value !== "string") {
      throw new SpecOptionError("withAnnotations", value, `the annotation ${key} must be a string`);
    }
  }
  return (spec) => {
    spec.annotations = { ...spec.annotations, ...Object.fromEntries(entries) };
  };
}
