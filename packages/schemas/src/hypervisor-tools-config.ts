/**
 * HypervisorToolsConfig: which image provides the hypervisor tools called `<name>`, published
 * at `$KV.controller.HypervisorToolsConfig.<name>` (`default` unless an app names another).
 */
import { z } from "zod";
import { ImageRefSchema, SchemaVersionSchema } from "./primitives.js";

/** The name of the hypervisor tools a VM uses when its config names none. */
export const DEFAULT_HYPERVISOR_TOOLS = "default";

/** Which image provides a set of hypervisor tools (qemu and friends). */
export const HypervisorToolsConfigSchema = z.strictObject({
  schemaVersion: SchemaVersionSchema,
  image: ImageRefSchema.meta({
    description:
      "image reference, or a local OCI layout as oci:<dir>:<tag> (how the built-in image is given)",
  }),
});

/** A HypervisorToolsConfig. */
export type HypervisorToolsConfig = z.infer<typeof HypervisorToolsConfigSchema>;
