/**
 * Registration of a built-in runtime image as `$KV.controller.HypervisorToolsConfig.<name>`
 * (`default`, `jvm`, `emulators`). The key is written only when it is absent or names a previous
 * built-in image of that runtime (an `oci:` layout in the same parent directory as the new one);
 * any other value is the operator's own choice and is kept. The write is a compare-and-set, so an
 * edit racing with it is never overwritten.
 */
import path from "node:path";
import { Publication } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { parseReference } from "@eve-tasks/registry";
import { messageTable } from "@eve-tasks/schemas";
import { ToolsImageError } from "./errors.js";

/** The tools name apps get when they name none. */
export const DEFAULT_TOOLS_NAME = "default";

/** What {@link registerDefaultTools} did. */
export interface RegisterResult {
  /**
   * `registered`: the key was absent; `replaced`: it named a previous built-in image;
   * `unchanged`: it already names `ref`; `kept`: it holds the user's own choice (or a value
   * that is not valid), left as it was.
   */
  readonly outcome: "registered" | "replaced" | "unchanged" | "kept";
  /** The image registered (or not, when kept). */
  readonly ref: string;
  /** The image the key named before, if any. */
  readonly previous: string | undefined;
  /** A line saying what happened, for logs. */
  readonly message: string;
}

/** Options of {@link registerDefaultTools}. */
export interface RegisterOptions {
  /** The key under HypervisorToolsConfig (default `default`). */
  name?: string;
  /** Gets {@link RegisterResult.message}. */
  log?: (line: string) => void;
}

/** The layout directory of an `oci:` ref, or undefined for anything else. */
function layoutDirOf(ref: string): string | undefined {
  try {
    const r = parseReference(ref);
    return r.kind === "oci-layout" ? r.dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `previous` names a built-in image made next to `ref`'s layout: the same parent dir, or,
 * for the `default` runtime's dir, the `qemu` dir next to it (where the hypervisor-tools image was
 * built before runtimes were images).
 */
export function isPreviousBuiltIn(previous: string, ref: string): boolean {
  const prev = layoutDirOf(previous);
  const next = layoutDirOf(ref);
  if (prev === undefined || next === undefined) return false;
  const prevParent = path.dirname(path.resolve(prev));
  const nextParent = path.dirname(path.resolve(next));
  if (prevParent === nextParent) return true;
  return (
    path.basename(nextParent) === "default" && prevParent === path.join(path.dirname(nextParent), "qemu")
  );
}

/** Thrown inside the update function to leave the key alone. */
class Keep extends Error {
  constructor(readonly previous: string | undefined) {
    super("keep");
  }
}

/**
 * Puts `{ schemaVersion: 1, image: ref }` at `HypervisorToolsConfig.<name>` in the controller's
 * bucket (name `default` unless given), unless it holds a user's own choice (see the module
 * comment). `ref` must be an `oci:<dir>:<tag>` layout reference (as {@link buildRuntimeImage}
 * returns).
 */
export async function registerDefaultTools(
  bus: Bus,
  ref: string,
  options: RegisterOptions = {},
): Promise<RegisterResult> {
  const name = options.name ?? DEFAULT_TOOLS_NAME;
  if (layoutDirOf(ref) === undefined) {
    throw new ToolsImageError(
      "REGISTER_FAILED",
      `not a built-in image reference: ${JSON.stringify(ref)} (expected oci:<dir>:<tag>)`,
      { context: { ref } },
    );
  }
  const table = new Publication(bus, messageTable("HypervisorToolsConfig"));
  const key = `HypervisorToolsConfig.${name}`;
  let previous: string | undefined;
  let outcome: RegisterResult["outcome"];
  try {
    const r = await table.update(name, (current) => {
      previous = current.value?.image;
      if (current.value === undefined) {
        // Absent or deleted; a value that does not validate is somebody's, not ours to replace.
        if (current.invalid !== undefined) throw new Keep(undefined);
        return { schemaVersion: 1, image: ref };
      }
      if (current.value.image === ref) return current.value;
      if (isPreviousBuiltIn(current.value.image, ref)) return { schemaVersion: 1, image: ref };
      throw new Keep(current.value.image);
    });
    outcome = r.outcome === "unchanged" ? "unchanged" : previous === undefined ? "registered" : "replaced";
  } catch (err) {
    if (!(err instanceof Keep)) {
      throw new ToolsImageError(
        "REGISTER_FAILED",
        `cannot register ${ref} as ${key}: ${(err as Error).message}`,
        { context: { ref, key }, cause: err },
      );
    }
    outcome = "kept";
  }
  const message = {
    registered: `${key}: registered the built-in image ${ref}`,
    replaced: `${key}: replaced the previous built-in image ${String(previous)} with ${ref}`,
    unchanged: `${key}: already the built-in image ${ref}`,
    kept:
      previous === undefined
        ? `${key}: kept as it is (its value is not a valid HypervisorToolsConfig); the built-in image ${ref} is not registered`
        : `${key}: kept the user's choice ${previous}; the built-in image ${ref} is not registered`,
  }[outcome];
  options.log?.(message);
  return { outcome, ref, previous, message };
}

/** Registers built-in runtime `name`'s image `ref` (see {@link registerDefaultTools}). */
export function registerBuiltInRuntime(
  bus: Bus,
  name: string,
  ref: string,
  options: Omit<RegisterOptions, "name"> = {},
): Promise<RegisterResult> {
  return registerDefaultTools(bus, ref, { ...options, name });
}
