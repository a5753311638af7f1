/** The "where is everything" text printed once everything is up. */
import { baseWorkerEnv, redactUrl } from "@eve-tasks/runtime";

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
  /** The live status page, when it is served. */
  readonly statusPageUrl?: string | null;
}

/** Where the workers and `eve-tasks` look for NATS when NATS_URL is not set. */
const DEFAULT_NATS_URL: string = baseWorkerEnv.NATS_URL.parse(undefined);

const owned = (pid: number | null, log: string | null): string =>
  pid === null ? "(given, not started here)" : `(pid ${pid}, started here; log ${log ?? "-"})`;

/** The banner text. */
export function buildBanner(b: BannerInfo): string {
  const url = redactUrl(b.natsUrl);
  const dir = b.natsCredentialsDir;
  const lines = [
    ``,
    `eve-tasks is up (launcher pid ${b.launcherPid})`,
    `  NATS           ${url}  ${owned(b.natsPid, b.natsLog)}`,
    `  containerd     ${b.containerdAddress}  ${owned(b.containerdPid, b.containerdLog)}`,
    `  data dir       ${b.dataDir}`,
    `  run dir        ${b.runDir}  (sockets; worker liveness files in health/)`,
    `  logs           ${b.logDir}  (launcher.log, <worker>.log)`,
    `  state file     ${b.stateFile}  (every PID the launcher owns)`,
    ...(b.statusPageUrl
      ? [`  status page    ${b.statusPageUrl}  (live: apps, workers, seeds, networks)`]
      : []),
    ...(dir === null
      ? []
      : [`  NATS users     passwords in ${dir}  (<user>.password, root only; the eve-tasks CLI finds them)`]),
    `  workers        ${b.workers.length > 0 ? b.workers.join(", ") : "none found"}  (from ${b.servicesDir})`,
  ];
  if (b.missingWorkers.length > 0) lines.push(`  not built yet  ${b.missingWorkers.join(", ")}`);
  lines.push(``, `From another terminal, in the repository, talk to it with eve-tasks:`);
  if (b.natsUrl !== DEFAULT_NATS_URL) {
    lines.push(`  export NATS_URL='${url}'       # NATS is not at ${DEFAULT_NATS_URL}`);
  }
  lines.push(
    `  npx eve-tasks apply -f examples/hello.json     # publish an app`,
    `  npx eve-tasks get                              # apps and their tasks`,
    `  npx eve-tasks watch                            # changes as they happen (Ctrl-C to leave)`,
    `  npx eve-tasks events hello                     # its task events`,
    `  npx eve-tasks delete hello --wait`,
    `  npx eve-tasks --help                           # every command`,
    `Any NATS client works as well (the nats CLI is optional; it is not in Debian): the subjects,`,
    `buckets and messages are in docs/contract.md.`,
    ``,
    b.keepTasks
      ? `Ctrl-C stops the workers, then containerd and nats-server if they were started here (--keep-tasks: tasks are left running).`
      : `Ctrl-C has the task-executor stop the tasks, then stops the workers, then containerd and nats-server if they were started here.`,
    ``,
  );
  return lines.join("\n");
}
