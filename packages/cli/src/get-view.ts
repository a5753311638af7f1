/** What `eve-tasks get` prints: the table of apps, or their JSON. */
import { estimateAnchorTaxMiB, isRuntimeApp, memoryLimitBytes } from "@eve-tasks/schemas";
import type { AppInstanceConfig, StageError, TaskStatus } from "@eve-tasks/schemas";
import type { AppView } from "./apps.js";
import { nameOf } from "./apps.js";
import { formatAge, formatBytes } from "./human.js";
import { renderTable } from "./table.js";

/** Shown in the STATE column for an app whose config has no TaskStatus yet. */
export const NO_STATUS = "-";

/** Columns of the table; ERROR is added only when some app has an error. */
export const GET_COLUMNS = ["NAME", "UUID", "STATE", "TASK ID", "MEMORY", "AGE"] as const;

/**
 * The memory limit of an app: the status's (the task's real cgroup limit) when known, else what
 * its config asks for (for a VM, plus its anchor tax; for a runtime app only when it sets its own
 * tax, since otherwise its runtime image declares it).
 */
export function memoryLimitOf(app: AppView): number | undefined {
  if (app.status && app.status.memoryLimitBytes !== null) return app.status.memoryLimitBytes;
  const config: AppInstanceConfig | undefined = app.config?.value;
  if (!config) return undefined;
  const r = config.resources;
  if (isRuntimeApp(config)) {
    return r.vmmOverheadMiB === undefined ? undefined : memoryLimitBytes(r.memoryMiB, r.vmmOverheadMiB);
  }
  const tax = config.virtualization === "HVM" ? (r.vmmOverheadMiB ?? estimateAnchorTaxMiB(r)) : 0;
  return memoryLimitBytes(r.memoryMiB, tax);
}

/**
 * When the app's age counts from: its task's start (`startedAt`) while it has a task, else
 * when its config was last written, else the status's last start or update.
 */
export function ageOrigin(app: AppView): Date | undefined {
  const s: TaskStatus | undefined = app.status;
  if (s && s.taskId > 0 && s.startedAt) return new Date(s.startedAt);
  if (app.config) return app.config.writtenAt;
  if (s) return new Date(s.startedAt ?? s.updatedAt);
  return undefined;
}

/** `spec-builder: message (config revision 5)`. */
export function describeStageError(e: StageError): string {
  return `${e.source}: ${e.message} (config revision ${e.configRevision})`;
}

/** The table row of an app. */
export function getRow(app: AppView, now: Date): string[] {
  const s = app.status;
  const limit = memoryLimitOf(app);
  const origin = ageOrigin(app);
  return [
    nameOf(app) ?? (app.config ? "-" : "(deleted)"),
    app.uuid,
    s ? s.state : NO_STATUS,
    s && s.taskId > 0 ? String(s.taskId) : "-",
    limit === undefined ? "-" : formatBytes(limit),
    origin ? formatAge(now.getTime() - origin.getTime()) : "-",
  ];
}

/** An app's addresses as `eth0=10.88.0.2,eth1=…` (TaskStatus `interfaces`); empty when none. */
export function addressesOf(app: AppView): string {
  return (app.status?.interfaces ?? []).map((i) => `${i.name}=${i.ip}`).join(",");
}

/** The table `eve-tasks get` prints, with an ERROR column when any app has an error. */
export function renderGetTable(apps: readonly AppView[], now: Date): string {
  const withErrors = apps.some((a) => a.status?.error);
  const withAddresses = apps.some((a) => (a.status?.interfaces.length ?? 0) > 0);
  const headers: string[] = [...GET_COLUMNS];
  if (withAddresses) headers.push("ADDRESSES");
  if (withErrors) headers.push("ERROR");
  const rows = apps.map((a) => {
    const row = getRow(a, now);
    if (withAddresses) row.push(addressesOf(a) || "-");
    if (withErrors) row.push(a.status?.error ? describeStageError(a.status.error) : "");
    return row;
  });
  return renderTable(headers, rows);
}

/** One app as `eve-tasks get --json` prints it. */
export interface AppJson {
  uuid: string;
  /** KV revision of the config (its configRevision), null without a config. */
  revision: number | null;
  config: AppInstanceConfig | null;
  status: TaskStatus | null;
}

/** The JSON of apps: `{ uuid, revision, config, status }` each, config or status null when absent. */
export function appsJson(apps: readonly AppView[]): AppJson[] {
  return apps.map((a) => ({
    uuid: a.uuid,
    revision: a.config?.revision ?? null,
    config: a.config?.value ?? null,
    status: a.status ?? null,
  }));
}
