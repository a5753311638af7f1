/** `eve-tasks watch [app]`: the current state of apps, then one line per change until Ctrl-C. */
import { subscribe } from "@eve-tasks/bus";
import type { Bus } from "@eve-tasks/bus";
import { AppInstanceConfigSchema, TaskStatusSchema } from "@eve-tasks/schemas";
import type { AppInstanceConfig, TaskStatus } from "@eve-tasks/schemas";
import { refersTo } from "../apps.js";
import type { CliContext } from "../context.js";

import { CONFIG_AGENT, STATUS_AGENT } from "../load-apps.js";
import { isHub, runHubWatch } from "../fleet.js";
import { requireBucket, withBus } from "../server.js";
import type { NatsTarget } from "../server.js";
import { sanitize } from "../table.js";
import type { WatchEvent, WatchEventType } from "../watch-lines.js";
import { configChanges, describeStatus, formatWatchLine, statusChanges } from "../watch-lines.js";

/** Options of `watch`. */
export interface WatchOptions {
  /** A uuid, a display name (matched as names change) or a uuid prefix; every app when absent. */
  app: string | undefined;
  /** One JSON object ({@link WatchEvent}) per line instead of text. */
  json: boolean;
  server: NatsTarget;
}

/** How long Ctrl-C waits for the watches to close before the connection is closed under them. */
const CLOSE_GRACE_MS = 300;

interface ConfigState {
  value: AppInstanceConfig;
  revision: number;
}

/** The joined view watch keeps up to date, and what it prints. */
class Watcher {
  readonly configs = new Map<string, ConfigState>();
  readonly statuses = new Map<string, TaskStatus>();
  /** The last known display name per uuid, kept after a config is deleted for its status lines. */
  readonly names = new Map<string, string>();
  live = false;

  constructor(
    private readonly ctx: CliContext,
    private readonly o: WatchOptions,
  ) {}

  /** Whether the app `uuid` is watched (its current or last known name counts). */
  matches(uuid: string, alsoName?: string): boolean {
    const ref = this.o.app;
    if (ref === undefined) return true;
    return [this.names.get(uuid), alsoName].some((name) => refersTo(ref, uuid, name || undefined));
  }

  event(type: WatchEventType, uuid: string, changes: string[]): WatchEvent {
    const config = this.configs.get(uuid);
    return {
      time: this.ctx.now().toISOString(),
      event: type,
      uuid,
      name: this.names.get(uuid) || null,
      changes,
      revision: config?.revision ?? null,
      config: config?.value ?? null,
      status: this.statuses.get(uuid) ?? null,
    };
  }

  emit(e: WatchEvent): void {
    this.ctx.out(this.o.json ? `${JSON.stringify(e)}\n` : formatWatchLine(e));
  }

  change(type: WatchEventType, uuid: string, changes: string[], alsoName?: string): void {
    if (this.live && this.matches(uuid, alsoName)) this.emit(this.event(type, uuid, changes));
  }

  setConfig(uuid: string, value: AppInstanceConfig, revision: number): void {
    this.configs.set(uuid, { value, revision });
    this.names.set(uuid, value.displayName);
  }

  /** The current state, one event per watched app, sorted by name then uuid. */
  printCurrent(): void {
    const uuids = [...new Set([...this.configs.keys(), ...this.statuses.keys()])]
      .filter((u) => this.matches(u))
      .sort((a, b) => (this.names.get(a) ?? "").localeCompare(this.names.get(b) ?? "") || a.localeCompare(b));
    for (const uuid of uuids) {
      const s = this.statuses.get(uuid);
      const changes = s ? describeStatus(s) : [];
      if (this.configs.get(uuid)?.value.activate === false) changes.push("activate false");
      if (!this.configs.has(uuid)) changes.push("config deleted");
      this.emit(this.event("current", uuid, changes));
    }
    if (uuids.length === 0) {
      const what = this.o.app === undefined ? "no apps yet" : `no app ${JSON.stringify(this.o.app)} yet`;
      this.ctx.err(`${what}; watching for changes (Ctrl-C to stop)\n`);
    }
  }

  invalid(type: string, key: string, message: string): void {
    if (this.matches(key)) {
      this.ctx.err(
        sanitize(`warning: invalid ${type}.${key} ignored: ${message.split("\n").join(" ")}`) + "\n",
      );
    }
  }
}

/** Says on stderr when the connection to NATS drops and when it is back (changes resume then). */
function reportConnection(bus: Bus, ctx: CliContext, server: string): void {
  void (async () => {
    for await (const s of bus.nc.status()) {
      if (s.type === "disconnect") ctx.err(`lost the connection to NATS at ${server}; reconnecting\n`);
      if (s.type === "reconnect") ctx.err(`reconnected to NATS at ${server}\n`);
    }
  })().catch(() => undefined);
}

/**
 * Prints the current state of the watched apps, then a line (or JSON object) per change of their
 * config or status, until `ctx.signal` is aborted (Ctrl-C).
 */
export async function runWatch(ctx: CliContext, o: WatchOptions): Promise<void> {
  await withBus(o.server, async (bus) => {
    if (await isHub(bus)) return runHubWatch(ctx, bus, o);
    await requireBucket(bus, CONFIG_AGENT, o.server);
    await requireBucket(bus, STATUS_AGENT, o.server);
    const w = new Watcher(ctx, o);
    const configs = await subscribe(bus, {
      agent: CONFIG_AGENT,
      type: "AppInstanceConfig",
      schema: AppInstanceConfigSchema,
      onCreate: (k, v, rev) => {
        w.setConfig(k, v, rev);
        w.change("config-created", k, []);
      },
      onModify: (k, v, old, rev) => {
        w.setConfig(k, v, rev);
        w.change("config-changed", k, configChanges(old, v), old.displayName);
      },
      onDelete: (k) => {
        w.configs.delete(k);
        w.change("config-deleted", k, []);
      },
      onInvalid: (i) => w.invalid("AppInstanceConfig", i.key, i.message),
    });
    const statuses = await subscribe(bus, {
      agent: STATUS_AGENT,
      type: "TaskStatus",
      schema: TaskStatusSchema,
      onCreate: (k, v) => {
        w.statuses.set(k, v);
        w.change("status-created", k, describeStatus(v));
      },
      onModify: (k, v, old) => {
        w.statuses.set(k, v);
        const changes = statusChanges(old, v);
        if (changes.length > 0) w.change("status-changed", k, changes);
      },
      onDelete: (k) => {
        w.statuses.delete(k);
        w.change("status-deleted", k, []);
        if (!w.configs.has(k)) w.names.delete(k);
      },
      onInvalid: (i) => w.invalid("TaskStatus", i.key, i.message),
    });
    try {
      await Promise.all([configs.synchronized, statuses.synchronized]);
      w.printCurrent();
      w.live = true;
      reportConnection(bus, ctx, o.server.url);
      if (!ctx.signal.aborted) {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
        );
      }
    } finally {
      // Closing the watches can take seconds after a reconnect; Ctrl-C should not: closing the
      // connection (withBus) ends whatever is left.
      const closed = Promise.all([configs.close(), statuses.close()]);
      await Promise.race([closed, new Promise((r) => setTimeout(r, CLOSE_GRACE_MS).unref())]);
    }
  });
}
