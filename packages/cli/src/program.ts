/** The `eve-tasks` command line: commands, flags, help, and how errors become exit codes. */
import { readFileSync } from "node:fs";
import { Command, CommanderError } from "@commander-js/extra-typings";
import { runApply } from "./commands/apply.js";
import { runEvents } from "./commands/events.js";
import { runKill } from "./commands/kill.js";
import { runLogs } from "./commands/logs.js";
import { DISCOVER_WAIT_MS, runWorkers } from "./commands/workers.js";
import { runGet } from "./commands/get.js";
import { DEFAULT_WAIT_TIMEOUT_MS, runDelete, runRestart, runSetActivate } from "./commands/lifecycle.js";
import type { LifecycleOptions } from "./commands/lifecycle.js";
import { runWatch } from "./commands/watch.js";
import { registerPull } from "./commands/pull.js";
import { registerNetworks } from "./commands/networks.js";
import { registerRuntimes } from "./commands/runtimes.js";
import { registerSeeds } from "./commands/seeds.js";
import { registerTax } from "./commands/tax.js";
import type { CliContext } from "./context.js";
import { UserError, describeError } from "./errors.js";
import { formatAge, parseDuration } from "./human.js";
import { runNodes } from "./fleet.js";
import { DEFAULT_NATS_URL, natsTarget, withBus } from "./server.js";
import type { CliAccess, NatsTarget } from "./server.js";

/** The CLI's version, from its package.json. */
export function cliVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

const EXAMPLES = `
Examples:
  eve-tasks apply -f hello.json            publish (create or update) an app's config
  eve-tasks get                            every app with its task's state
  eve-tasks watch hello                    state changes of the app named hello, until Ctrl-C
  eve-tasks stop hello --wait              stop it and wait until it is HALTED
  eve-tasks restart 6f1c1c1e --wait        restart it (a unique uuid prefix names an app too)
  eve-tasks delete hello
  eve-tasks events hello --follow          hello's task events (created, exited, restarting...), then new ones
  eve-tasks kill --signal HUP hello        send SIGHUP to hello's anchor process
  eve-tasks logs hello -f --tail 20        hello's last 20 lines of output, then new output until Ctrl-C
  eve-tasks workers                        every worker process (NATS service), its node and metrics URL
  eve-tasks tax                            VMs' reserved anchor tax beside the measured peak
  eve-tasks apply -f lan.json              publish a NetworkInstanceConfig (a file with subnet, no uuid)
  eve-tasks networks                       network instances: state, subnet, bridge, apps
  eve-tasks runtimes                       runtime images: labels, seed state and digest per node

<app> is a uuid, a display name that only one app has, or a unique uuid prefix.
The CLI talks only to NATS: --server, else NATS_URL, else ${DEFAULT_NATS_URL}.
Set EVE_TASKS_DEBUG=1 to see stack traces of unexpected errors.
`;

/** Builds the program; its actions write through `ctx` and throw UserError for the user's mistakes. */
export function buildProgram(ctx: CliContext): Command<[], { server?: string }> {
  const program = new Command()
    .name("eve-tasks")
    .description("Publish app configs and watch their tasks on an eve-tasks node, over NATS JetStream KV.")
    .version(cliVersion())
    .option("-s, --server <url>", `NATS URL (default: $NATS_URL, else ${DEFAULT_NATS_URL})`)
    .configureOutput({ writeOut: (s) => ctx.out(s), writeErr: (s) => ctx.err(s) })
    .showHelpAfterError("(add --help for usage)")
    .exitOverride()
    .addHelpText("after", EXAMPLES);
  /** Where a command connects: reading commands as `viewer`, writing ones as `controller`. */
  const server = (access: CliAccess): NatsTarget => natsTarget(program.opts().server, ctx.env, access);

  program
    .command("apply")
    .summary("validate an app's config and publish it")
    .description(
      "Validate an AppInstanceConfig (JSON) locally, then publish it to " +
        "$KV.controller.AppInstanceConfig.<uuid> with a KV put. Nothing is published if it is invalid.",
    )
    .requiredOption("-f, --file <path>", "the config file, or - for stdin")
    .option("--dry-run", "only validate; publish nothing")
    .action(async (opts) => {
      await runApply(ctx, { file: opts.file, dryRun: opts.dryRun === true, server: server("write") });
    });

  program
    .command("nodes")
    .summary("a fleet's devices (against a hub)")
    .description(
      "Against a fleet's hub: every device with whether its leaf is connected (the hub's source of its " +
        "statuses heard from it in the last 10 s), its apps, its last status seen on the hub, and the hub's source of its statuses.",
    )
    .option("--json", "print JSON")
    .action(async (opts) => {
      await withBus(server("read"), (bus) => runNodes(ctx, bus, { json: opts.json === true }));
    });

  program
    .command("get")
    .summary("list apps with their task's state")
    .description(
      "List apps: NAME, UUID, STATE, TASK ID, MEMORY (the task's memory limit), AGE, ADDRESSES " +
        "(<interface>=<ip>, when some app has network interfaces) and ERROR when a " +
        'stage reported one. STATE is "-" while an app has no TaskStatus yet. AGE counts from the ' +
        "task's start while it has a task, else from the config's last change.",
    )
    .argument("[app]", "only this app (a uuid, a display name, or a uuid prefix)")
    .option("--json", "print a JSON array of { uuid, revision, config, status }")
    .action(async (app, opts) => {
      await runGet(ctx, { app, json: opts.json === true, server: server("read") });
    });

  program
    .command("watch")
    .summary("print apps' state, then each change, until Ctrl-C")
    .description(
      "Print the current state of apps, then one line per change of their config or status " +
        "(state transitions, taskId, exits, errors) until Ctrl-C.",
    )
    .argument("[app]", "only this app (a uuid, a display name, or a uuid prefix)")
    .option("--json", "print one JSON object per line")
    .action(async (app, opts) => {
      await runWatch(ctx, { app, json: opts.json === true, server: server("read") });
    });

  const lifecycle = (
    name: string,
    summary: string,
    description: string,
    waitsFor: string,
    run: (o: LifecycleOptions) => Promise<void>,
  ): void => {
    program
      .command(name)
      .summary(summary)
      .description(description)
      .argument("<app>", "a uuid, a unique display name, or a unique uuid prefix")
      .option("-w, --wait", `wait until ${waitsFor}`)
      .option(
        "--timeout <duration>",
        "how long --wait waits (e.g. 30s, 2m)",
        formatAge(DEFAULT_WAIT_TIMEOUT_MS),
      )
      .action(async (app, opts) => {
        const timeoutMs = parseDuration(opts.timeout, "--timeout");
        await run({ app, wait: opts.wait === true, timeoutMs, server: server("write") });
      });
  };
  const cas =
    "The config is read and written back with compare-and-set on its KV revision (retried on " +
    "conflict), so a concurrent edit is never lost.";
  lifecycle(
    "stop",
    "stop an app's task (activate false)",
    `Stop an app's task: set activate to false in its AppInstanceConfig. ${cas}`,
    "its status is HALTED (no task)",
    (o) => runSetActivate(ctx, o, false),
  );
  lifecycle(
    "start",
    "start an app's task (activate true)",
    `Start an app's task: set activate to true in its AppInstanceConfig. ${cas}`,
    "its status is RUNNING",
    (o) => runSetActivate(ctx, o, true),
  );
  lifecycle(
    "restart",
    "restart an app's task (restartCounter + 1)",
    `Restart an app's task: raise restartCounter in its AppInstanceConfig by one. ${cas}`,
    "its status is RUNNING with a new task",
    (o) => runRestart(ctx, o),
  );
  lifecycle(
    "delete",
    "delete an app's config",
    "Delete an app's AppInstanceConfig (a KV delete): its task is stopped, its container removed, " +
      "then its TaskStatus and TaskMetrics.",
    "its TaskStatus is gone",
    (o) => runDelete(ctx, o),
  );
  program
    .command("events")
    .summary("list task events, optionally following new ones")
    .description(
      "List task events from the TASK_EVENTS stream (received, created, started, exited, restarting, " +
        "not-restarting, stopping, killed, deleted, error, accel-fallback), oldest first, each with its message and " +
        "fields. With --follow, keep printing new events until Ctrl-C.",
    )
    .argument("[app]", "only this app (a uuid, a display name, or a uuid prefix)")
    .option("-f, --follow", "keep printing new events until Ctrl-C")
    .option("-n, --last <count>", "only the last <count> stored events")
    .option("--json", "print one JSON object per line")
    .action(async (app, opts) => {
      const last = opts.last === undefined ? undefined : Number(opts.last);
      if (last !== undefined && (!Number.isInteger(last) || last < 0)) {
        throw new UserError(`--last must be a whole number, not "${opts.last}"`);
      }
      await runEvents(ctx, {
        app,
        follow: opts.follow === true,
        json: opts.json === true,
        last,
        server: server("read"),
      });
    });

  program
    .command("kill")
    .summary("send a signal to an app's anchor process")
    .description(
      "Ask the app's node's task-executor to send a signal to the app's anchor process " +
        "(eve.rpc.task-executor.<node>.signal). The answer only says whether it was sent: what the " +
        "signal does shows in the status and the events.",
    )
    .argument("<app>", "a uuid, a unique display name, or a unique uuid prefix")
    .option("--signal <signal>", "signal name or number (HUP, SIGTERM, 9)", "SIGTERM")
    .action(async (app, opts) => {
      await runKill(ctx, { app, signal: opts.signal, server: server("write") });
    });
  program
    .command("logs")
    .summary("print an app's output (stdout and stderr; a VM's console), optionally following it")
    .description(
      "Print the output of an app's task (its anchor's stdout and stderr; a VM's serial console) " +
        "as kept on its node, across the rotated files, oldest first. It is read through the node's " +
        "task-executor over NATS (eve.rpc.task-executor.<node>.logs), so it works from anywhere NATS " +
        "reaches the node. With --follow, keep printing new output, across rotations, until Ctrl-C; " +
        "output rotated away before it was read is reported on stderr as a gap.",
    )
    .argument("<app>", "a uuid, a unique display name, or a unique uuid prefix")
    .option("-f, --follow", "keep printing new output until Ctrl-C")
    .option("-n, --tail <lines>", "start at the last <lines> lines")
    .option("--since <time>", "start at output written since then: a duration (10m, 1h) or a timestamp")
    .action(async (app, opts) => {
      const tail = opts.tail === undefined ? undefined : Number(opts.tail);
      if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) {
        throw new UserError(`--tail must be a whole number of lines, not "${opts.tail}"`);
      }
      await runLogs(ctx, {
        app,
        follow: opts.follow === true,
        tail,
        since: opts.since,
        server: server("read"),
      });
    });

  program
    .command("workers")
    .summary("list the worker processes answering as NATS services")
    .description(
      "Ask every NATS service for $SRV.INFO and $SRV.STATS and list the eve-tasks workers among " +
        "them (services eve-tasks-<worker>; replicas one line each): node, PID, version, uptime, the " +
        "URL of its Prometheus metrics (on that node's 127.0.0.1) and the requests its endpoints served.",
    )
    .option("--json", "print a JSON array")
    .option("--wait <duration>", "how long to wait for answers", formatAge(DISCOVER_WAIT_MS))
    .action(async (opts) => {
      await runWorkers(ctx, {
        json: opts.json === true,
        waitMs: parseDuration(opts.wait, "--wait"),
        server: server("read"),
      });
    });
  registerPull(program, ctx);
  registerSeeds(program, ctx, () => server("read"));
  registerNetworks(program, ctx, () => server("read"));
  registerRuntimes(program, ctx, () => server("read"));
  registerTax(program, ctx, () => server("read"));
  return program;
}

/**
 * Runs the CLI with `argv` (as `process.argv`: node, script, args...) and returns the exit code:
 * 0, 1 for errors (one line, no stack trace unless EVE_TASKS_DEBUG=1), commander's code for
 * usage errors, 130 when a wait was interrupted.
 */
export async function runCli(ctx: CliContext, argv: readonly string[]): Promise<number> {
  const debug = ctx.env.EVE_TASKS_DEBUG === "1";
  try {
    await buildProgram(ctx).parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // commander printed it already
    ctx.err(`eve-tasks: ${describeError(err, debug)}\n`);
    return err instanceof UserError ? err.exitCode : 1;
  }
}
