/** The "where is everything" text printed once everything is up. */
import { redactUrl } from "@eve-tasks/runtime";

/** What the banner shows. */
export interface BannerInfo {
  readonly launcherPid: number;
  readonly natsUrl: string;
  /** nats-server PID when the launcher started it. */
  readonly natsPid: number | null;
  readonly natsLog: string | null;
  readonly containerdAddress: string;
  readonly containerdPid: number | null;
  readonly containerdLog: string | null;
  readonly dataDir: string;
  readonly runDir: string;
  readonly logDir: string;
  readonly stateFile: string;
  readonly servicesDir: string;
  readonly workers: readonly string[];
  readonly missingWorkers: readonly string[];
  readonly keepTasks: boolean;
}

const owned = (pid: number | null, log: string | null): string =>
  pid === null ? "(given, not started here)" : `(pid ${pid}, started here; log ${log ?? "-"})`;

/** The banner text. */
export function buildBanner(b: BannerInfo): string {
  const url = redactUrl(b.natsUrl);
  const s = `--server '${url}'`;
  const lines = [
    ``,
    `eve-tasks is up (launcher pid ${b.launcherPid})`,
    `  NATS           ${url}  ${owned(b.natsPid, b.natsLog)}`,
    `  containerd     ${b.containerdAddress}  ${owned(b.containerdPid, b.containerdLog)}`,
    `  data dir       ${b.dataDir}`,
    `  run dir        ${b.runDir}  (sockets; worker liveness files in health/)`,
    `  logs           ${b.logDir}  (launcher.log, <worker>.log)`,
    `  state file     ${b.stateFile}  (every PID the launcher owns)`,
    `  workers        ${b.workers.length > 0 ? b.workers.join(", ") : "none found"}  (from ${b.servicesDir})`,
  ];
  if (b.missingWorkers.length > 0) lines.push(`  not built yet  ${b.missingWorkers.join(", ")}`);
  lines.push(
    ``,
    `Publish an app (KV put to $KV.controller.AppInstanceConfig.<uuid>; any NATS client works, e.g. the nats CLI):`,
    `  nats ${s} kv put controller AppInstanceConfig.<uuid> "$(cat app.json)"`,
    `Watch status, metrics and events:`,
    `  nats ${s} kv watch task-executor 'TaskStatus.>'`,
    `  nats ${s} kv watch proc-monitor 'TaskMetrics.>'`,
    `  nats ${s} sub 'eve.events.>'`,
    `Stop an app: nats ${s} kv del controller AppInstanceConfig.<uuid>`,
    ``,
    b.keepTasks
      ? `Ctrl-C stops the workers, then containerd and nats-server if they were started here (--keep-tasks: tasks are left running).`
      : `Ctrl-C stops the workers, the tasks, then containerd and nats-server if they were started here.`,
    ``,
  );
  return lines.join("\n");
}
