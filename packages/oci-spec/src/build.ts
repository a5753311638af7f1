/** Building a spec from the default by applying options in order, as containerd's `oci.GenerateSpec`. */
import { defaultSpec } from "./defaults.js";
import type { RuntimeSpec } from "./types.js";

/**
 * One change to a spec, applied in place (containerd's `oci.SpecOpts`). Options validate their
 * arguments when they are created (throwing {@link SpecOptionError}), so applying one never fails.
 */
export type SpecOpt = (spec: RuntimeSpec) => void;

/**
 * Builds a spec: the {@link defaultSpec}, then each option in order (a later option wins over an
 * earlier one touching the same field). Returns a new object each call.
 *
 * @example
 * buildSpec(withArgs(["/bin/sh"]), withMemoryLimitBytes(64 * 2 ** 20), withCpus(1), withHostname(uuid))
 */
export function buildSpec(...opts: readonly SpecOpt[]): RuntimeSpec {
  const spec = defaultSpec();
  for (const opt of opts) opt(spec);
  return spec;
}

/** Combines several options into one, applied in order. */
export function composeOpts(...opts: readonly SpecOpt[]): SpecOpt {
  return (spec) => {
    for (const opt of opts) opt(spec);
  };
}
