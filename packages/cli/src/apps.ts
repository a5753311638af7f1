/** The user's view of apps: each config joined with its status by uuid, and finding `<app>`. */
import type { AppInstanceConfig, TaskStatus } from "@eve-tasks/schemas";
import { UserError } from "./errors.js";
import type { Stored } from "./kv.js";

/** One app: its config (absent while a deleted app's status lingers) and its status (absent until the executor reports). */
export interface AppView {
  uuid: string;
  config: Stored<AppInstanceConfig> | undefined;
  status: TaskStatus | undefined;
}

/** The display name of an app, or undefined when it has none. */
export function nameOf(app: AppView): string | undefined {
  const name = app.config?.value.displayName;
  return name ? name : undefined;
}

/** `hello (6f1c…-…)` or just the uuid for an app without a name. */
export function describeApp(uuid: string, name: string | undefined): string {
  return name ? `${name} (${uuid})` : uuid;
}

/**
 * Joins configs and statuses by uuid, sorted by display name then uuid; a status without a
 * config (an app being deleted) is kept, with `config` undefined.
 */
export function joinApps(
  configs: ReadonlyMap<string, Stored<AppInstanceConfig>>,
  statuses: ReadonlyMap<string, TaskStatus>,
): AppView[] {
  const uuids = new Set([...configs.keys(), ...statuses.keys()]);
  return [...uuids]
    .map((uuid) => ({ uuid, config: configs.get(uuid), status: statuses.get(uuid) }))
    .sort((a, b) => (nameOf(a) ?? "").localeCompare(nameOf(b) ?? "") || a.uuid.localeCompare(b.uuid));
}

const UUID_PREFIX = /^[0-9a-f][0-9a-f-]{3,35}$/;

/** Whether `ref` could name the app `uuid` called `name`: its uuid, its name, or a uuid prefix. */
export function refersTo(ref: string, uuid: string, name: string | undefined): boolean {
  return (
    uuid === ref || (name !== undefined && name === ref) || (UUID_PREFIX.test(ref) && uuid.startsWith(ref))
  );
}

/**
 * The apps `<app>` names: the app with that uuid; else the apps with that display name; else the
 * apps whose uuid starts with it (at least 4 characters). Empty when none.
 */
export function matchApps<A extends AppView>(apps: readonly A[], ref: string): A[] {
  const byUuid = apps.filter((a) => a.uuid === ref);
  if (byUuid.length > 0) return byUuid;
  const byName = apps.filter((a) => nameOf(a) === ref);
  if (byName.length > 0) return byName;
  if (UUID_PREFIX.test(ref)) return apps.filter((a) => a.uuid.startsWith(ref));
  return [];
}

function listApps(apps: readonly AppView[], limit = 10): string {
  const shown = apps.slice(0, limit).map((a) => describeApp(a.uuid, nameOf(a)));
  const more = apps.length > limit ? `, and ${apps.length - limit} more` : "";
  return shown.join(", ") + more;
}

/** The UserError for a `<app>` that names no app, listing the apps there are. */
export function unknownAppError(apps: readonly AppView[], ref: string): UserError {
  return new UserError(
    apps.length === 0
      ? `no app ${JSON.stringify(ref)}: there are no apps`
      : `no app ${JSON.stringify(ref)} (by uuid or name); apps: ${listApps(apps)}`,
  );
}

/**
 * The one app `<app>` names (a uuid, a unique display name, or a unique uuid prefix); a UserError
 * listing the candidates when it names none or several.
 */
export function resolveApp<A extends AppView>(apps: readonly A[], ref: string): A {
  const found = matchApps(apps, ref);
  if (found.length === 1) return found[0]!;
  if (found.length === 0) throw unknownAppError(apps, ref);
  throw new UserError(
    `${JSON.stringify(ref)} is ambiguous: it names ${found.length} apps: ${listApps(found, 20)}; use the uuid`,
  );
}
