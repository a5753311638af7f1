/**
 * @eve-tasks/tools-image: builds the built-in hypervisor-tools image from the host's Debian
 * `qemu-system-x86` as a local OCI image layout, and registers it as
 * `HypervisorToolsConfig.default` unless the user chose another image.
 */
export * from "./errors.js";
export {
  QEMU_PACKAGE,
  collectQemuRootfs,
  debianPackageVersion,
  defaultFirmwareDirs,
  hostArch,
  parseLdd,
} from "./collect.js";
export type {
  CollectOptions,
  HostArch,
  LddLine,
  MissingLibrary,
  QemuRootfs,
  RootfsEntry,
} from "./collect.js";
export { DEFAULT_COMPRESSION_LEVEL, LAYER_MTIME, writeLayer } from "./layer.js";
export type { LayerProgress, WriteLayerOptions, WrittenLayer } from "./layer.js";
export {
  IMAGE_PATH,
  LABELS,
  MEDIA_TYPES,
  REF_NAME_ANNOTATION,
  buildToolsImage,
  defaultToolsImageDir,
  inspectToolsImage,
  layoutRef,
  toolsImageTag,
} from "./layout.js";
export type { BuildOptions, BuildProgress, ToolsImage } from "./layout.js";
export { DEFAULT_TOOLS_NAME, isPreviousBuiltIn, registerDefaultTools } from "./register.js";
export type { RegisterOptions, RegisterResult } from "./register.js";
