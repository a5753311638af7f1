/** Parsers of the cgroup files the proc-monitor reads, v1 and v2. */
import { ProcfsParseError } from "./errors.js";

/**
 * v1's memory.limit_in_bytes for "no limit" is PAGE_COUNTER_MAX pages in bytes
 * (9223372036854771712 with 4 KiB pages); any value from 2^53 on (8 PiB) is taken as no limit.
 */
export const V1_UNLIMITED_FROM_BYTES = 2 ** 53;

/**
 * A file holding one unsigned integer (memory.current, memory.usage_in_bytes, cpuacct.usage,
 * pids.current...). A counter past 2^53 loses precision but keeps its magnitude.
 */
export function parseCgroupUint(text: string, file: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new ProcfsParseError(file, "not an unsigned integer", text);
  return Number(t);
}

/** v2's memory.max (or pids.max): `max` is no limit, which is null. */
export function parseV2Max(text: string, file: string): number | null {
  return text.trim() === "max" ? null : parseCgroupUint(text, file);
}

/** v1's memory.limit_in_bytes: a huge value (see {@link V1_UNLIMITED_FROM_BYTES}) is no limit, null. */
export function parseV1Limit(text: string, file: string): number | null {
  const n = parseCgroupUint(text, file);
  return n >= V1_UNLIMITED_FROM_BYTES ? null : n;
}

/**
 * A flat keyed file, `<key> <value>` per line: v2's memory.events and cpu.stat, v1's
 * memory.oom_control.
 */
export function parseFlatKeyed(text: string, file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const m = /^(\S+)\s+(\d+)$/.exec(line.trim());
    if (!m) throw new ProcfsParseError(file, `not a "<key> <value>" line: ${JSON.stringify(line)}`, text);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/**
 * The value of `key` in a flat keyed file without splitting it (the per-sample path), or
 * undefined when the file has no such key.
 */
export function flatKeyValue(text: string, file: string, key: string): number | undefined {
  let at = text.startsWith(`${key} `) ? 0 : text.indexOf(`\n${key} `);
  if (at < 0) return undefined;
  if (at > 0) at += 1;
  const start = at + key.length + 1;
  let end = text.indexOf("\n", start);
  if (end < 0) end = text.length;
  const v = text.slice(start, end).trim();
  if (!/^\d+$/.test(v)) throw new ProcfsParseError(file, `${key} is not an unsigned integer`, text);
  return Number(v);
}

/** One key of a flat keyed file; throws when the kernel did not write it. */
export function flatKey(text: string, file: string, key: string): number {
  const v = parseFlatKeyed(text, file).get(key);
  if (v === undefined) throw new ProcfsParseError(file, `no ${key}`, text);
  return v;
}

/** Lines of a list file (v1's `tasks`, v2's `cgroup.threads`): how many IDs it lists. */
export function countLines(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) n++;
  if (text.length > 0 && !text.endsWith("\n")) n++;
  return n;
}
