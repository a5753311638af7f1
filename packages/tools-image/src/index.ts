/**
 * @eve-tasks/tools-image: builds the built-in runtime images (`default`: qemu-system-x86_64 and
 * its loader; `jvm`: a jlink'd JRE and its loader; `emulators`: qemu-user-static) from the host's
 * Debian packages as local OCI image layouts, and registers each as `HypervisorToolsConfig.<name>`
 * unless the operator chose another image.
 */
export * from "./errors.js";
export {
  Collector,
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
  BUILT_IN_RUNTIMES,
  BUSYBOX_PACKAGE,
  BUSYBOX_PATH,
  EMULATION_TAX,
  EMULATORS,
  IMAGE_PATH,
  JDK_PACKAGE,
  JLINK_OPTIONS,
  JRE_DIR,
  JVM_MODULES,
  LABELS,
  LOADER_PATH,
  QEMU_TAX,
  QEMU_USER_PACKAGE,
  RECIPES,
  inputsDigest,
  jlinkPath,
  loaderText,
  recipeVersions,
  runtimeImageTag,
} from "./recipes.js";
export type { BuiltInRuntime, Collected, CollectContext, Recipe, RecipeConfig } from "./recipes.js";
export {
  MEDIA_TYPES,
  REF_NAME_ANNOTATION,
  buildRuntimeImage,
  buildToolsImage,
  builtInImagesRoot,
  defaultRuntimeImageDir,
  defaultToolsImageDir,
  inspectRuntimeImage,
  installRuntimeImage,
  layoutRef,
} from "./layout.js";
export type { BuildOptions, BuildProgress, RuntimeImage, ToolsImage } from "./layout.js";
export {
  DEFAULT_TOOLS_NAME,
  isPreviousBuiltIn,
  registerBuiltInRuntime,
  registerDefaultTools,
} from "./register.js";
export type { RegisterOptions, RegisterResult } from "./register.js";
