/**
 * A task's network namespace: `/run/netns/eve-<uuid>` with loopback up and one veth per
 * interface, its host end on the instance's bridge, its task end renamed to the interface's name
 * with the app's MAC, address, MTU and default route; for a VM, a tap per interface joined to the
 * veth by tc u32 + mirred both ways (the guest takes the MAC and gets the address by DHCP).
 *
 * Built and removed by the netns helper ({@link NetnsHelper}: netlink, no process started) when
 * the caller has one and the task has no taps; otherwise planned as `ip -batch` / `tc -batch`
 * lines (pure) and applied by one script that runs the host's batch (it adds the netns, so it
 * runs in the caller's mount namespace), then the task's, then (for a VM) the tc one.
 */
import { existsSync } from "node:fs";
import { CommandError } from "./errors.js";
import { inNetns, ipBatchForce, runScript } from "./exec.js";
import { NetnsHelper } from "./netns-helper.js";

/** One interface of a task, every name and address resolved. */
export interface TaskInterfacePlan {
  /** The name inside the task (`eth0`). */
  readonly name: string;
  /** The host end, on the bridge. */
  readonly hostIfName: string;
  readonly bridge: string;
  readonly mac: string;
  readonly ip: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly mtu: number;
  /** Whether the task's default route goes through this interface's gateway. */
  readonly defaultRoute: boolean;
  /** A VM's tap for the interface; then the netns holds no address (the guest has it). */
  readonly tap?: string | undefined;
}

/** A task's network, resolved. */
export interface TaskNetworkPlan {
  readonly uuid: string;
  /** The netns name (`eve-<uuid>`). */
  readonly netns: string;
  readonly interfaces: readonly TaskInterfacePlan[];
}

/** The command lines that build a task's network. */
export interface TaskNetworkCommands {
  /** `ip -batch` in the namespace where bridges live: the netns, the veths, their bridge ports. */
  readonly host: string[];
  /** `ip -batch` in the task's netns: loopback, names, MACs, addresses, routes, taps. */
  readonly task: string[];
  /** `tc -batch` in the task's netns: the mirred pairs between veth and tap (VMs only). */
  readonly tc: string[];
}

/** The commands that build `plan` (pure). */
export function planTaskNetwork(plan: TaskNetworkPlan): TaskNetworkCommands {
  const host = [`netns add ${plan.netns}`];
  const task = ["link set lo up"];
  const tc: string[] = [];
  for (const i of plan.interfaces) {
    host.push(
      `link add ${i.hostIfName} mtu ${i.mtu} type veth peer name ${i.name} address ${i.mac} mtu ${i.mtu} netns ${plan.netns}`,
      `link set ${i.hostIfName} master ${i.bridge} up`,
    );
    task.push(`link set ${i.name} up`);
    if (i.tap !== undefined) {
      task.push(`tuntap add dev ${i.tap} mode tap`, `link set ${i.tap} mtu ${i.mtu} up`);
      tc.push(
        `qdisc add dev ${i.name} ingress`,
        `filter add dev ${i.name} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ${i.tap}`,
        `qdisc add dev ${i.tap} ingress`,
        `filter add dev ${i.tap} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev ${i.name}`,
      );
    } else {
      task.push(`addr add ${i.ip}/${i.prefixLength} dev ${i.name}`);
      if (i.defaultRoute) task.push(`route add default via ${i.gateway} dev ${i.name}`);
    }
  }
  return { host, task, tc };
}

/** The commands that remove a task's network: its host-side veths, then its netns. */
export function planTaskTeardown(netns: string, hostIfNames: readonly string[]): string[] {
  return [...hostIfNames.map((n) => `link del ${n}`), `netns del ${netns}`];
}

/** How long {@link setupTaskNetwork} took, in milliseconds. */
export interface TaskNetworkTimings {
  totalMs: number;
}

function nsExists(netns: string): boolean {
  return existsSync(`/run/netns/${netns}`);
}

/**
 * The script that applies a task's batches, run in a fork of the command shell (no `sh` is
 * started for it): the host's batch from stdin, run by its trailing arguments
 * (`ip`, or `nsenter --net=… -- ip` for EVE_NET_NS); the task's and tc's from its first
 * arguments (data, never code). Its exit status says which failed: 1 host, 2 task, 3 tc.
 */
const SETUP_SCRIPT = [
  'netns=$1 task=$2 tc=$3; shift 3; "$@" -batch - || exit 1',
  'printf "%s" "$task" | ip -n "$netns" -batch - || exit 2',
  '[ -z "$tc" ] || printf "%s" "$tc" | tc -n "$netns" -batch - || exit 3',
].join("\n");

/** Runs the three batches of `cmds` in one script; rejects with a CommandError naming the failed one. */
async function applyTaskBatches(
  hostNetns: string | null,
  netns: string,
  cmds: TaskNetworkCommands,
): Promise<void> {
  const lines = (l: readonly string[]): string => (l.length === 0 ? "" : `${l.join("\n")}\n`);
  try {
    await runScript(SETUP_SCRIPT, [netns, lines(cmds.task), lines(cmds.tc), ...inNetns(hostNetns, ["ip"])], {
      input: lines(cmds.host),
    });
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const code = err.context.exitCode;
    const stage = code === 1 ? "host" : code === 2 ? "task" : code === 3 ? "tc" : "setup";
    throw setupFailed(netns, stage, err, { batches: cmds });
  }
}

/**
 * The error of a failed setup, naming its side: `host` (the netns, veths and bridge ports),
 * `task` (inside the netns), `tc` (a VM's taps), or `setup`/`args`/`helper` (neither ran).
 */
function setupFailed(netns: string, stage: string, err: CommandError, extra: object): CommandError {
  const stderr = typeof err.context.stderr === "string" ? err.context.stderr : "";
  const detail = stderr.trim().split("\n").slice(-5).join("; ");
  return new CommandError(
    `the ${stage} side of netns ${netns} failed${detail ? `: ${detail}` : ` (${err.message})`}`,
    {
      context: { ...err.context, stage, ...extra },
      cause: err,
    },
  );
}

/** Builds `plan` with the netns helper; rejects with a CommandError naming the failed side. */
async function applyWithHelper(
  helper: NetnsHelper,
  hostNetns: string | null,
  plan: TaskNetworkPlan,
): Promise<void> {
  try {
    await helper.setup(hostNetns, plan);
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const stage = typeof err.context.stage === "string" ? err.context.stage : "helper";
    throw setupFailed(plan.netns, stage, err, {});
  }
}

/**
 * Builds a task's network. A netns or veth left by an interrupted earlier attempt is removed and
 * the build retried once; a failed build removes what it made.
 *
 * @param hostNetns where the bridges live (EVE_NET_NS), or null for the current namespace.
 * @throws CommandError naming the failing side and command.
 */
export async function setupTaskNetwork(
  hostNetns: string | null,
  plan: TaskNetworkPlan,
  helper?: NetnsHelper,
): Promise<TaskNetworkTimings> {
  const hostIfs = plan.interfaces.map((i) => i.hostIfName);
  let apply: () => Promise<void>;
  if (helper !== undefined && NetnsHelper.handles(plan))
    apply = () => applyWithHelper(helper, hostNetns, plan);
  else {
    const cmds = planTaskNetwork(plan);
    apply = () => applyTaskBatches(hostNetns, plan.netns, cmds);
  }
  const t0 = performance.now();
  try {
    await apply();
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    await teardownTaskNetwork(hostNetns, plan.netns, hostIfs, helper);
    // Only the host side meets leftovers (a netns or veth of the same name): try once more.
    if (err.context.stage !== "host") throw err;
    await apply().catch(async (again: unknown) => {
      await teardownTaskNetwork(hostNetns, plan.netns, hostIfs, helper);
      throw again;
    });
  }
  return { totalMs: performance.now() - t0 };
}

/**
 * Removes a task's network (idempotent): its host-side veths (the peers go with them) and its
 * netns. Resolves once the netns is gone.
 *
 * @throws CommandError when the netns is still there afterwards.
 */
export async function teardownTaskNetwork(
  hostNetns: string | null,
  netns: string,
  hostIfNames: readonly string[],
  helper?: NetnsHelper,
): Promise<void> {
  // Most tasks have no network: seen from the file system, without starting `ip`.
  if (!nsExists(netns) && hostNetns === null && !hostIfNames.some((n) => existsSync(`/sys/class/net/${n}`)))
    return;
  const ok =
    helper !== undefined
      ? await helper.teardown(hostNetns, netns, hostIfNames).then(
          () => true,
          (err: unknown) => {
            if (err instanceof CommandError) return false;
            throw err;
          },
        )
      : await ipBatchForce(hostNetns, planTaskTeardown(netns, hostIfNames));
  if (!ok && nsExists(netns)) {
    throw new CommandError(`could not remove network namespace ${netns}`, {
      context: { netns, hostIfNames },
    });
  }
}
