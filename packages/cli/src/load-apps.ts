/** Reading every app's config and status from the bus, for `get` and to find `<app>`. */
import type { Bus } from "@eve-tasks/bus";
import { AppInstanceConfigSchema, TaskStatusSchema, messageTypes } from "@eve-tasks/schemas";
import type { AppView } from "./apps.js";
import { joinApps } from "./apps.js";
import type { InvalidStored } from "./kv.js";
import { readTable } from "./kv.js";

/** The configs' bucket (`controller`) and the statuses' bucket (`task-executor`). */
export const CONFIG_AGENT = messageTypes.AppInstanceConfig.agent;
/** The bucket TaskStatus lives in. */
export const STATUS_AGENT = messageTypes.TaskStatus.agent;

/** Every app, and the values that were skipped because they are invalid. */
export interface LoadedApps {
  apps: AppView[];
  invalidConfigs: InvalidStored[];
  invalidStatuses: InvalidStored[];
}

/** Reads AppInstanceConfig and TaskStatus (a missing bucket reads as empty) and joins them by uuid. */
export async function loadApps(bus: Bus): Promise<LoadedApps> {
  const [configs, statuses] = await Promise.all([
    readTable(bus, CONFIG_AGENT, "AppInstanceConfig", AppInstanceConfigSchema),
    readTable(bus, STATUS_AGENT, "TaskStatus", TaskStatusSchema),
  ]);
  const statusValues = new Map([...statuses.values].map(([k, v]) => [k, v.value]));
  return {
    apps: joinApps(configs.values, statusValues),
    invalidConfigs: configs.invalid,
    invalidStatuses: statuses.invalid,
  };
}

/** One warning line per invalid value, for stderr. */
export function invalidWarnings(loaded: LoadedApps): string {
  const line = (type: string, i: InvalidStored): string =>
    `warning: ${type}.${i.key} (revision ${i.revision}) is invalid and ignored: ${i.message.split("\n").join(" ")}\n`;
  return (
    loaded.invalidConfigs.map((i) => line("AppInstanceConfig", i)).join("") +
    loaded.invalidStatuses.map((i) => line("TaskStatus", i)).join("")
  );
}
