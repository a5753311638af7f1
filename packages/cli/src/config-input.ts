/** Reading and validating an AppInstanceConfig the user gives to `apply`, before anything is sent. */
import { AppInstanceConfigSchema, NetworkInstanceConfigSchema, decodeValue } from "@eve-tasks/schemas";
import type { AppInstanceConfig, NetworkInstanceConfig } from "@eve-tasks/schemas";
import { UserError } from "./errors.js";

/**
 * Validates `bytes` (from `source`, a file name or `stdin`) as an AppInstanceConfig: at most 64 KiB,
 * JSON, and the schema. Throws a UserError whose message names the source and, for a schema
 * violation, every bad field with its path (`→ at resources.memoryMiB`).
 */
export function parseConfigInput(bytes: Uint8Array, source: string): AppInstanceConfig {
  const d = decodeValue(AppInstanceConfigSchema, bytes);
  if (d.ok) return d.value;
  switch (d.reason) {
    case "schema":
      throw new UserError(`invalid AppInstanceConfig in ${source}:\n${d.message}`);
    case "malformed-json":
      throw new UserError(`${source} is not valid JSON: ${d.message.replace(/^malformed JSON: /, "")}`);
    default:
      throw new UserError(`${source} is too large: ${d.message}`);
  }
}

/** What `apply -f` was given: an app's config or a network instance's. */
export type ApplyInput =
  | { readonly kind: "app"; readonly config: AppInstanceConfig }
  | { readonly kind: "network"; readonly config: NetworkInstanceConfig };

/**
 * Validates `bytes` as what `apply` takes: a NetworkInstanceConfig when the object has a
 * `subnet` and no `uuid`, else an AppInstanceConfig (see {@link parseConfigInput}).
 */
export function parseApplyInput(bytes: Uint8Array, source: string): ApplyInput {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    raw = undefined; // parseConfigInput says what is wrong with it
  }
  const isNetwork = typeof raw === "object" && raw !== null && "subnet" in raw && !("uuid" in raw);
  if (!isNetwork) return { kind: "app", config: parseConfigInput(bytes, source) };
  const d = decodeValue(NetworkInstanceConfigSchema, bytes);
  if (d.ok) return { kind: "network", config: d.value };
  throw new UserError(
    d.reason === "schema"
      ? `invalid NetworkInstanceConfig in ${source}:\n${d.message}`
      : `${source} is too large: ${d.message}`,
  );
}

/** Reads `-f <path>` (or stdin for `-`) with a one-line error when it cannot be read. */
export async function readConfigSource(
  path: string,
  read: { readStdin(): Promise<Uint8Array>; readFile(path: string): Promise<Uint8Array> },
): Promise<{ bytes: Uint8Array; source: string }> {
  if (path === "-") return { bytes: await read.readStdin(), source: "stdin" };
  try {
    return { bytes: await read.readFile(path), source: path };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === "ENOENT"
        ? "no such file"
        : e.code === "EISDIR"
          ? "it is a directory"
          : e.code === "EACCES"
            ? "permission denied"
            : e.message;
    throw new UserError(`cannot read ${path}: ${why}`);
  }
}
