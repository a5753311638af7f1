/** Reading and validating an AppInstanceConfig the user gives to `apply`, before anything is sent. */
import { AppInstanceConfigSchema, decodeValue } from "@eve-tasks/schemas";
import type { AppInstanceConfig } from "@eve-tasks/schemas";
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
