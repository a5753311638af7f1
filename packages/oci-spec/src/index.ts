/**
 * @eve-tasks/oci-spec: builds OCI runtime specs by composing small options on a sane default Linux
 * spec, like containerd's Go client (`oci.WithProcessArgs`, `oci.WithMemoryLimit`, …):
 *
 * ```ts
 * const spec = buildSpec(withArgs(["/bin/sh"]), withMemoryLimitBytes(64 * 2 ** 20), withCpus(1));
 * ```
 *
 * Everything here is node-independent: no cgroups path, no resolved host paths, no rlimit clamps.
 */
export type * from "./types.js";
export { SpecOptionError } from "./errors.js";
export {
  DEFAULT_CAPABILITIES,
  DEFAULT_MASKED_PATHS,
  DEFAULT_NAMESPACES,
  DEFAULT_NOFILE_LIMIT,
  DEFAULT_PATH,
  DEFAULT_READONLY_PATHS,
  OCI_VERSION,
  ROOTFS_PATH,
  defaultMounts,
  defaultSpec,
} from "./defaults.js";
export { buildSpec, composeOpts } from "./build.js";
export type { SpecOpt } from "./build.js";
export { parseNumericUser, withArgs, withCwd, withEnv, withUser } from "./process-opts.js";
export type { NumericUser } from "./process-opts.js";
export { CPU_PERIOD_US, withCpus, withMemoryLimitBytes } from "./resource-opts.js";
export { withBindMount, withReadonlyRoot } from "./filesystem-opts.js";
export type { BindMount } from "./filesystem-opts.js";
export { withAnnotations, withHostname } from "./identity-opts.js";
export { IncompleteSpecError, toTaskSpec } from "./task-spec.js";
export {
  ARTIFACTS_DIR,
  QMP_DIR_IN_TASK,
  QMP_SOCKET_IN_TASK,
  QMP_SOCKET_NAME,
  artifactPath,
} from "./runtime-paths.js";
