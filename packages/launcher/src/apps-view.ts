/**
 * The apps table `npm start` shows under the workers: the same table as `eve-tasks get`,
 * kept current from the bus (configs joined with statuses), and on a non-TTY one line per
 * status change.
 */
import { subscribe } from "@eve-tasks/bus";
import type { Bus, Subscription } from "@eve-tasks/bus";
import { describeStatus, joinApps, renderGetTable, statusChanges } from "@eve-tasks/cli";
import type { Stored } from "@eve-tasks/cli";
import { messageTable } from "@eve-tasks/schemas";
import type {
  AppInstanceConfig,
  TaskStatus,
  AppInstanceConfigSchema,
  TaskStatusSchema,
} from "@eve-tasks/schemas";

/** Follows configs and statuses; `lines()` renders the table. */
export class AppsView {
  readonly #configs = new Map<string, Stored<AppInstanceConfig>>();
  readonly #statuses = new Map<string, TaskStatus>();
  readonly #subs: Subscription<typeof AppInstanceConfigSchema | typeof TaskStatusSchema>[] = [];

  private constructor(private readonly onChange: (line: string) => void) {}

  /** Subscribes to both tables; `onChange` gets a line per status change (for a non-TTY log). */
  static async open(bus: Bus, onChange: (line: string) => void): Promise<AppsView> {
    const v = new AppsView(onChange);
    const setConfig = (key: string, value: AppInstanceConfig, revision: number): void => {
      v.#configs.set(key, { key, revision, writtenAt: v.#configs.get(key)?.writtenAt ?? new Date(), value });
    };
    v.#subs.push(
      await subscribe(bus, {
        ...messageTable("AppInstanceConfig"),
        onCreate: setConfig,
        onModify: (k, value, _old, revision) => setConfig(k, value, revision),
        onDelete: (k) => void v.#configs.delete(k),
      }),
    );
    v.#subs.push(
      await subscribe(bus, {
        ...messageTable("TaskStatus"),
        onCreate: (k, s) => {
          v.#statuses.set(k, s);
          v.#say(k, describeStatus(s));
        },
        onModify: (k, s, old) => {
          v.#statuses.set(k, s);
          const changes = statusChanges(old, s);
          if (changes.length) v.#say(k, changes);
        },
        onDelete: (k) => {
          v.#statuses.delete(k);
          v.#say(k, ["status deleted"]);
        },
      }),
    );
    return v;
  }

  #say(uuid: string, words: readonly string[]): void {
    const name = this.#configs.get(uuid)?.value.displayName;
    this.onChange(`app ${name ? `${name} (${uuid})` : uuid}: ${words.join(", ")}`);
  }

  /** The table, one string per line; a hint when there are no apps. */
  lines(now = new Date()): string[] {
    const apps = joinApps(this.#configs, this.#statuses);
    if (apps.length === 0) return ["apps          none yet (eve-tasks apply -f app.json)"];
    return renderGetTable(apps, now).trimEnd().split("\n");
  }

  async close(): Promise<void> {
    await Promise.all(this.#subs.map((s) => s.close()));
  }
}
