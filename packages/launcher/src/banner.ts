/** The "where is everything" text printed once everything is up. */
import { natsPasswordFile } from "@eve-tasks/embedded";
import { redactUrl } from "@eve-tasks/runtime";
import { natsInboxPrefix } from "@eve-tasks/schemas";

/** What the banner shows. */
export interface BannerInfo {
  readonly launcherPid: number;
  readonly natsUrl: string;
  /** nats-server PID when the launcher started it. */
  readonly natsPid: number | null;
  readonly natsLog: string | null;
  /** Where the NATS passwords are (`<user>.password`), when the server asks for them. */
  readonly natsCredentialsDir: string | null;
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
  const dir = b.natsCredentialsDir;
  /** The nats CLI's options to connect as `user` (on its own inbox prefix, the only one it may use). */
  const s = (user: string): string =>
    `--server '${url}'` +
    (dir === null
      ? ""
      : ` --user ${user} --password "$(cat '${natsPasswordFile(dir, user)}')" --inbox-prefix ${natsInboxPrefix(user)}`);
  const lines = [
    ``,
    `eve-tasks is up (launcher pid ${b.launcherPid})`,
    `  NATS           ${url}  ${owned(b.natsPid, b.natsLog)}`,
    `  containerd     ${b.containerdAddress}  ${owned(b.containerdPid, b.containerdLog)}`,
    `  data dir       ${b.dataDir}`,
    `  run dir        ${b.runDir}  (sockets; worker liveness files in health/)`,
    `  logs           ${b.logDir}  (launcher.log, <worker>.log)`,
    `  state file     ${b.stateFile}  (every PID the launcher owns)`,
    ...(dir === null
      ? []
      : [`  NATS users     passwords in ${dir}  (<user>.password, root only; the eve-tasks CLI finds them)`]),
    `  workers        ${b.workers.length > 0 ? b.workers.join(", ") : "none found"}  (from ${b.servicesDir})`,
  ];
  if (b.missingWorkers.length > 0) lines.push(`  not built yet  ${b.missingWorkers.join(", ")}`);
  lines.push(
    ``,
    `Publish an app (KV put to $KV.controller.AppInstanceConfig.<uuid>; any NATS client works, e.g. the nats CLI):`,
    `  nats ${s("controller")} kv put controller AppInstanceConfig.<uuid> "$(cat app.json)"`,
    `Watch status, metrics and events:`,
    `  nats ${s("viewer")} kv watch task-executor 'TaskStatus.>'`,
    `  nats ${s("viewer")} kv watch proc-monitor 'TaskMetrics.>'`,
    `  nats ${s("viewer")} sub 'eve.events.>'`,
    `Stop an app: nats ${s("controller")} kv del controller AppInstanceConfig.<uuid>`,
    ``,
    b.keepTasks
      ? `Ctrl-C stops the workers, then containerd and nats-server if they were started here (--keep-tasks: tasks are left running).`
      : `Ctrl-C stops the workers, the tasks, then containerd and nats-server if they were started here.`,
    ``,
  );
  return lines.join("\n");
}
