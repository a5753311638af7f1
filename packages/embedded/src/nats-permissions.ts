/**
 * The NATS users of eve-tasks and their subject permissions: the one source of both the embedded
 * nats-server's (`npm start`) and deploy/'s (`deploy/nats/permissions.conf`, rendered from here
 * by `deploy/nats/render-permissions.mjs`; test/deploy.test.ts checks the file is this render).
 *
 * The rule enforced (DESIGN.md "The bus", "Trust"): every KV bucket has one writer, its agent; a
 * worker reads only its inputs; every user gets its replies and consumer deliveries on its own
 * inbox prefix (`_INBOX_<user>`), so no user sees another's reads; the workers' durable consumers
 * (their shared work queues) are theirs alone.
 */
import {
  SPEC_BUILDER_DURABLE,
  hubControllerBucket,
  isFleetNode,
  natsInboxPrefix,
  seedFetcherDurables,
  workerServiceName,
} from "@eve-tasks/schemas";

/** Every NATS user, in the order the config lists them. */
export const NATS_USERS = [
  "admin",
  "controller",
  "viewer",
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const;

/** A NATS user of eve-tasks. */
export type NatsUser = (typeof NATS_USERS)[number];

/** The workers, each its own NATS user (named after it). */
export const NATS_WORKER_USERS = [
  "spec-builder",
  "task-executor",
  "proc-monitor",
  "hypervisor-seed-fetcher",
] as const satisfies readonly NatsUser[];

/** A worker's NATS user. */
export type NatsWorkerUser = (typeof NATS_WORKER_USERS)[number];

/** Whether `name` is one of the {@link NATS_WORKER_USERS} (never admin, controller or viewer). */
export function isNatsWorkerUser(name: string): name is NatsWorkerUser {
  return (NATS_WORKER_USERS as readonly string[]).includes(name);
}

/** Whether `name` is one of the {@link NATS_USERS}. */
export function isNatsUser(name: string): name is NatsUser {
  return (NATS_USERS as readonly string[]).includes(name);
}

/**
 * The environment variable holding `user`'s password for nats-server:
 * `hypervisor-seed-fetcher` → `EVE_NATS_HYPERVISOR_SEED_FETCHER_PASSWORD`.
 */
export function natsPasswordVariable(user: string): string {
  return `EVE_NATS_${user.toUpperCase().replaceAll("-", "_")}_PASSWORD`;
}

/** Subjects with a comment saying why they are there. */
export interface SubjectGroup {
  readonly why?: string;
  readonly subjects: readonly string[];
}

/** One user's entry of the `authorization.users` list. */
export interface NatsUserPermissions extends NatsUserEntry {
  readonly user: NatsUser;
}

/** An entry of the `authorization.users` list, of any user name (a hub's device users too). */
export interface NatsUserEntry {
  readonly user: string;
  /** Comment lines above the entry. */
  readonly about: readonly string[];
  /** Undefined: no permissions block, i.e. everything (admin). */
  readonly permissions?: {
    readonly publishAllow: readonly SubjectGroup[];
    readonly publishDeny: readonly SubjectGroup[];
    readonly subscribeAllow: readonly SubjectGroup[];
    /** Subjects it may not subscribe to (nor, for a leaf connection's user, be sent) even where an allow matches. */
    readonly subscribeDeny?: readonly SubjectGroup[];
    /** May publish replies to requests it received (and nothing else on other inboxes). */
    readonly allowResponses: boolean;
  };
}

/** What the permissions depend on. */
export interface NatsPermissionsOptions {
  /**
   * The nodes whose hypervisor-seed-fetchers use this server: their durable consumers are named
   * after the node, and a subject permission can name a consumer only whole, so controller and
   * viewer are denied exactly those of these nodes. `npm start`: its EVE_NODE.
   */
  readonly nodes: readonly string[];
}

const kv = (agent: string): string => `KV_${agent}`;
const api = (path: string): string => `$JS.API.${path}`;
/** The same API of a device's JetStream domain (a leaf node), as a hub-side client reaches it. */
const domainApi = (path: string): string => `$JS.*.API.${path}`;

/** A node name usable in a consumer name (and a config file): what EVE_NODE allows. */
const NODE_NAME = /^[A-Za-z0-9_-]+$/;

/** What reading bucket `agent` takes: direct gets, watches (ephemeral push consumers) and their flow control. */
function reads(agent: string): string[] {
  const s = kv(agent);
  return [
    api(`STREAM.INFO.${s}`),
    api(`DIRECT.GET.${s}`),
    api(`DIRECT.GET.${s}.>`),
    api(`STREAM.MSG.GET.${s}`),
    api(`CONSUMER.CREATE.${s}.>`),
    api(`CONSUMER.INFO.${s}.*`),
    `$JS.FC.${s}.>`,
  ];
}

/** What writing its own bucket takes: a KV put/delete is a publish to `$KV.<agent>.>`; creating it when missing. */
function writes(agent: string): string[] {
  return [`$KV.${agent}.>`, api(`STREAM.CREATE.${kv(agent)}`)];
}

/** Creating, reading and taking the messages of durable `durable` on stream `stream` (a shared work queue). */
function workQueue(stream: string, durable: string): string[] {
  return [
    api(`CONSUMER.CREATE.${stream}.${durable}`),
    api(`CONSUMER.CREATE.${stream}.${durable}.>`),
    api(`CONSUMER.INFO.${stream}.${durable}`),
    api(`CONSUMER.MSG.NEXT.${stream}.${durable}`),
    `$JS.ACK.${stream}.${durable}.>`,
  ];
}

/** What would let someone else create, re-configure or take the messages of durable `durable`. */
function durableTakeover(stream: string, durable: string, viaDomains: boolean): string[] {
  const paths = [
    `CONSUMER.CREATE.${stream}.${durable}`,
    `CONSUMER.CREATE.${stream}.${durable}.>`,
    `CONSUMER.MSG.NEXT.${stream}.${durable}`,
  ];
  return [...paths.map(api), ...(viaDomains ? paths.map(domainApi) : [])];
}

/**
 * The read-only JetStream API over every stream (controller and viewer), also through domains,
 * and asking the NATS services who they are (the status page's workers table).
 */
export function readEverything(): SubjectGroup[] {
  const paths = [
    "INFO",
    "STREAM.NAMES",
    "STREAM.LIST",
    "STREAM.INFO.*",
    "STREAM.MSG.GET.*",
    "DIRECT.GET.>",
    // watches and ordered consumers: named ephemeral consumers (KV_WATCHER_…, oc_…)
    "CONSUMER.CREATE.*.>",
    "CONSUMER.INFO.*.*",
    "CONSUMER.NAMES.*",
    "CONSUMER.LIST.*",
    // ordered pull consumers, e.g. reading TASK_EVENTS
    "CONSUMER.MSG.NEXT.*.*",
  ];
  return [
    {
      why: "read-only JetStream API, every stream (KV reads, watches, ordered consumers)",
      subjects: paths.map(api),
    },
    { why: "flow control of its watches", subjects: ["$JS.FC.>"] },
    {
      why: "service discovery: $SRV.PING, $SRV.INFO, $SRV.STATS (of all, of a service, of one instance); replies to its own inbox",
      subjects: ["PING", "INFO", "STATS"].flatMap((verb) => [`$SRV.${verb}`, `$SRV.${verb}.>`]),
    },
    {
      why: "the same through a device's JetStream domain (a hub-side client of a leaf node)",
      subjects: paths.map(domainApi),
    },
  ];
}

/**
 * Every worker's durable consumer, for the deny lists of those who may create consumers on any
 * name: the spec-builders' and each node's hypervisor-seed-fetchers'.
 */
function workerDurables(nodes: readonly string[]): string[] {
  return [
    SPEC_BUILDER_DURABLE,
    ...nodes.flatMap((n) => {
      const d = seedFetcherDurables(n);
      return [d.tools, d.images];
    }),
  ];
}

/**
 * What answering as NATS service `eve-tasks-<worker>` takes: subscribing to `$SRV.<verb>` (every
 * service), `$SRV.<verb>.<name>` and `$SRV.<verb>.<name>.<id>` for PING, INFO and STATS, its own
 * name only (so no worker answers as another); its replies need allow_responses.
 */
function serviceOf(worker: NatsWorkerUser): SubjectGroup {
  const name = workerServiceName(worker);
  return {
    why: `its NATS service ${name}: $SRV.PING, $SRV.INFO, $SRV.STATS (all services, by name, by id)`,
    subjects: ["$SRV.*", `$SRV.*.${name}`, `$SRV.*.${name}.*`],
  };
}

/** Discovering the workers: PING, INFO and STATS requests to every service (replies on its inbox). */
const DISCOVER: SubjectGroup = {
  why: "discover the workers: $SRV.PING, $SRV.INFO, $SRV.STATS (NATS services eve-tasks-<worker>)",
  subjects: ["$SRV.>"],
};

/** Reading task logs through a node's executor (also from a fleet's hub). */
export const READ_LOGS: SubjectGroup = {
  why: "read task logs: eve.rpc.task-executor.<node>.logs",
  subjects: ["eve.rpc.task-executor.*.logs"],
};

/**
 * The users and their permissions.
 *
 * @throws {Error} when a node name could not be part of a consumer name.
 */
export function natsPermissions(options: NatsPermissionsOptions): NatsUserPermissions[] {
  for (const n of options.nodes) {
    if (!NODE_NAME.test(n))
      throw new Error(`invalid node name ${JSON.stringify(n)}: letters, digits, - or _`);
  }
  const nodes = [...new Set(options.nodes)];
  const durables = workerDurables(nodes);
  const protect = (viaDomains: boolean): SubjectGroup[] => [
    {
      why:
        "the workers' durable consumers (shared work queues) are theirs alone: nobody else creates, " +
        `re-configures or takes their messages (hypervisor-seed-fetcher's of nodes: ${nodes.join(", ") || "none"})`,
      subjects: durables.flatMap((d) => durableTakeover(kv("controller"), d, viaDomains)),
    },
  ];
  const inbox = (user: NatsUser): SubjectGroup => ({
    why: "its replies and consumer deliveries: its own inbox prefix only",
    subjects: [`${natsInboxPrefix(user)}.>`],
  });
  const specBuilderQueue = workQueue(kv("controller"), SPEC_BUILDER_DURABLE);

  return [
    {
      user: "admin",
      about: [
        "operators and the launcher of `npm start`: everything (create buckets with replicas, delete,",
        "purge); never a worker. No permissions block: may publish and subscribe to everything.",
      ],
    },
    {
      user: "controller",
      about: [
        "people and controllers (the CLI's apply, stop, delete, kill): write `controller`, read",
        "everything, signal anchors",
      ],
      permissions: {
        publishAllow: [
          {
            why: "its own bucket: AppInstanceConfig, HypervisorToolsConfig (put and delete), created if missing",
            subjects: writes("controller"),
          },
          ...readEverything(),
          {
            why: "its bucket on a device, through the device's domain",
            subjects: ["$JS.*.API.$KV.controller.>"],
          },
          {
            why: "signal an app's anchor: eve.rpc.task-executor.<node>.signal",
            subjects: ["eve.rpc.task-executor.*.signal"],
          },
          READ_LOGS,
          DISCOVER,
        ],
        publishDeny: protect(true),
        subscribeAllow: [
          inbox("controller"),
          { why: "plain subscriptions to changes and events", subjects: ["$KV.>", "eve.events.>"] },
        ],
        allowResponses: false,
      },
    },
    {
      user: "viewer",
      about: [
        "read-only (the CLI's get, watch, events, logs; status pages): read everything (task logs",
        "and the workers' NATS services too), write nothing",
      ],
      permissions: {
        publishAllow: [...readEverything(), READ_LOGS, DISCOVER],
        publishDeny: protect(true),
        subscribeAllow: [
          inbox("viewer"),
          { why: "plain subscriptions to changes and events", subjects: ["$KV.>", "eve.events.>"] },
        ],
        allowResponses: false,
      },
    },
    {
      user: "spec-builder",
      about: [
        "spec-builder: reads AppInstanceConfig (controller) through the shared durable consumer",
        "`spec-builder` and seeds (hypervisor-seed-fetcher); writes TaskConfig.",
      ],
      permissions: {
        publishAllow: [
          { why: "its own bucket", subjects: [...writes("spec-builder"), api("INFO")] },
          {
            why: "the shared work queue over AppInstanceConfig: create, info, fetch, ack/nak/term",
            subjects: specBuilderQueue,
          },
          {
            why: "reads: its input (the work queue's current values), seeds, its own (compare-and-set)",
            subjects: [
              api(`STREAM.INFO.${kv("controller")}`),
              api(`DIRECT.GET.${kv("controller")}`),
              api(`DIRECT.GET.${kv("controller")}.>`),
              api(`STREAM.MSG.GET.${kv("controller")}`),
              ...reads("hypervisor-seed-fetcher"),
              ...reads("spec-builder"),
            ],
          },
        ],
        publishDeny: [],
        subscribeAllow: [inbox("spec-builder"), serviceOf("spec-builder")],
        allowResponses: true,
      },
    },
    {
      user: "task-executor",
      about: [
        "task-executor: reads TaskConfig (spec-builder) and NetworkInstanceConfig (controller); writes",
        "TaskStatus, NetworkInstanceStatus and task events; answers signal requests, task log requests",
        "and stop-tasks requests (the launcher's Ctrl-C; only admin sends them) for its node, as",
        "endpoints of its NATS service.",
      ],
      permissions: {
        publishAllow: [
          { why: "its own bucket", subjects: [...writes("task-executor"), api("INFO")] },
          {
            why: "task events (TASK_EVENTS, created if missing)",
            subjects: ["eve.events.*", api("STREAM.CREATE.TASK_EVENTS"), api("STREAM.INFO.TASK_EVENTS")],
          },
          {
            why: "reads: TaskConfig, its own (compare-and-set)",
            subjects: [...reads("spec-builder"), ...reads("task-executor")],
          },
          {
            why: "reads: NetworkInstanceConfig of the controller bucket (a watch filtered to it; the stream's info and message get, which NATS cannot filter by key, come with opening the bucket)",
            subjects: [
              api(`STREAM.INFO.${kv("controller")}`),
              api(`STREAM.MSG.GET.${kv("controller")}`),
              api(`CONSUMER.CREATE.${kv("controller")}.*.$KV.controller.NetworkInstanceConfig.>`),
              // A device's controller is a mirror of the hub's controller-<node>, read by its
              // subjects (only a node whose name can be a device's can be one).
              ...nodes
                .filter(isFleetNode)
                .map((n) =>
                  api(
                    `CONSUMER.CREATE.${kv("controller")}.*.$KV.${hubControllerBucket(n)}.NetworkInstanceConfig.>`,
                  ),
                ),
              api(`CONSUMER.INFO.${kv("controller")}.*`),
              `$JS.FC.${kv("controller")}.>`,
            ],
          },
        ],
        publishDeny: [],
        subscribeAllow: [
          inbox("task-executor"),
          {
            why: "signal requests (eve.rpc.task-executor.<node>.signal)",
            subjects: ["eve.rpc.task-executor.*.signal"],
          },
          {
            why: "stop-tasks requests (eve.rpc.task-executor.<node>.stop-tasks: the launcher's Ctrl-C)",
            subjects: ["eve.rpc.task-executor.*.stop-tasks"],
          },
          {
            why: "task log requests (eve.rpc.task-executor.<node>.logs)",
            subjects: ["eve.rpc.task-executor.*.logs"],
          },
          serviceOf("task-executor"),
          {
            why: "the proc-monitor's anchor events (an anchor found gone is acted on at once)",
            subjects: ["eve.events.*"],
          },
        ],
        allowResponses: true,
      },
    },
    {
      user: "proc-monitor",
      about: [
        "proc-monitor: reads TaskStatus (task-executor) and VMs' TaskConfig (spec-builder, for the",
        "tools image and vCPUs of the measured anchor tax); writes TaskMetrics, AnchorTax and anchor",
        "events.",
      ],
      permissions: {
        publishAllow: [
          { why: "its own bucket", subjects: [...writes("proc-monitor"), api("INFO")] },
          { why: "anchor events (TASK_EVENTS)", subjects: ["eve.events.*", api("STREAM.INFO.TASK_EVENTS")] },
          {
            why: "reads: TaskStatus, TaskConfig, its own (compare-and-set)",
            subjects: [...reads("task-executor"), ...reads("spec-builder"), ...reads("proc-monitor")],
          },
        ],
        publishDeny: [],
        subscribeAllow: [inbox("proc-monitor"), serviceOf("proc-monitor")],
        allowResponses: true,
      },
    },
    {
      user: "hypervisor-seed-fetcher",
      about: [
        "hypervisor-seed-fetcher: reads HypervisorToolsConfig and the image roots of apps (controller)",
        "through its node's two shared durable consumers (hypervisor-seed-fetcher-<node>-tools, -images);",
        "writes HypervisorSeed and ImageSeed.",
      ],
      permissions: {
        publishAllow: [
          { why: "its own bucket", subjects: [...writes("hypervisor-seed-fetcher"), api("INFO")] },
          {
            why:
              "its nodes' shared work queues over the controller's tables: create, info, fetch, " +
              "ack/nak/term (any node's: the consumer name holds the node)",
            subjects: [api(`CONSUMER.MSG.NEXT.${kv("controller")}.*`), `$JS.ACK.${kv("controller")}.*.>`],
          },
          {
            why: "reads: the controller's tables, its own",
            subjects: [...reads("controller"), ...reads("hypervisor-seed-fetcher")],
          },
        ],
        publishDeny: [
          {
            why: "the spec-builders' work queue is theirs",
            subjects: [
              ...durableTakeover(kv("controller"), SPEC_BUILDER_DURABLE, false),
              `$JS.ACK.${kv("controller")}.${SPEC_BUILDER_DURABLE}.>`,
            ],
          },
        ],
        subscribeAllow: [inbox("hypervisor-seed-fetcher"), serviceOf("hypervisor-seed-fetcher")],
        allowResponses: true,
      },
    },
  ];
}

const HEADER = (nodes: readonly string[]): string[] => [
  "eve-tasks: NATS users and subject permissions. Included by single-node.conf, leaf-node.conf and",
  "cluster/node-*.conf, and by the nats-server `npm start` runs (`include` paths are relative to the",
  "including file).",
  "",
  `GENERATED by @eve-tasks/embedded (renderNatsPermissions) for the nodes: ${nodes.join(", ") || "(none)"}.`,
  "Do not edit: render it again for your nodes, e.g.",
  "  node deploy/nats/render-permissions.mjs --node <EVE_NODE> > /etc/eve-tasks/nats/permissions.conf",
  "A node not listed still works; only its hypervisor-seed-fetchers' durable consumers are then not",
  "protected from the controller and viewer users (their names hold the node).",
  "",
  'The rule it enforces (deploy/README.md; DESIGN.md "The bus", "Trust"): every JetStream KV bucket',
  'has exactly one writer, its agent. A KV put is a publish to `$KV.<bucket>.<Type>.<key>`, so "may',
  'write bucket B" is "may publish to `$KV.B.>`", and every user may publish to the `$KV.` subjects',
  "of its own bucket only. Reads go through the JetStream API (stream info, direct get, ephemeral",
  "consumers for watches), each worker's to its inputs only; replies and consumer deliveries come",
  "back on the user's own inbox prefix `_INBOX_<user>` (clients set it as their inbox prefix), the",
  "only inbox it may subscribe to, so no user receives another's reads.",
  "",
  "Users (passwords from the environment: nats-server refuses to start when one is unset):",
  ...NATS_USERS.map((u) => `  ${u.padEnd(24)} ${natsPasswordVariable(u)}`),
  "A password is parsed by nats-server as a config value: letters and digits only, starting with a",
  "letter, at least 16 characters (`echo p$(openssl rand -hex 24)`). An EMPTY value is accepted by",
  'nats-server and means "no password": check-passwords.sh (run by eve-tasks-nats.service) and',
  "`npm start` refuse it.",
  "",
  "Who creates buckets: admin all five and TASK_EVENTS ahead of the workers (create-buckets.mjs, or",
  "the launcher of `npm start`). As a fallback each agent may create its own bucket, the controller",
  "`controller`, the task-executor TASK_EVENTS. Nobody but admin updates, deletes or purges a stream,",
  "or deletes a consumer: a stream created by someone else could be made to source or mirror data.",
  "",
  "Wildcards: `*` is one whole token, `>` one or more at the end. Direct get of a key is",
  "`$JS.API.DIRECT.GET.KV_<b>.$KV.<b>.<key>`; a consumer create on nats-server >= 2.9 is",
  "`$JS.API.CONSUMER.CREATE.<stream>.<name>[.<filter>]` (`.<stream>.>` matches both); a consumer's",
  "name is a single token, so only whole names can be denied.",
  "",
  "Every worker is a NATS service `eve-tasks-<worker>`: it subscribes to the `$SRV.` subjects of",
  "its own service name only and replies with allow_responses; controller and viewer may send",
  "`$SRV.PING/INFO/STATS` to discover them, and read task logs through a node's executor.",
  "The `$JS.*.API.` entries are the same API reached through a JetStream domain: a controller on a",
  "hub reading (and writing the `controller` bucket of) a device running leaf-node.conf; a fleet's",
  "own users (e.g. one per device) would be added here the same way.",
];

function renderGroups(groups: readonly SubjectGroup[], indent: string): string[] {
  const lines: string[] = [];
  for (const g of groups) {
    if (g.why !== undefined) lines.push(`${indent}# ${g.why}`);
    for (const s of g.subjects) lines.push(`${indent}${JSON.stringify(s)}`);
  }
  return lines;
}

function renderUser(u: NatsUserEntry): string[] {
  const about = u.about.map((l) => `    # ${l}`);
  const password = `$${natsPasswordVariable(u.user)}`;
  if (u.permissions === undefined) {
    return [...about, `    { user: ${u.user}, password: ${password} }`];
  }
  const p = u.permissions;
  const notes = p.publishAllow.filter((g) => g.subjects.length === 0);
  const allow = p.publishAllow.filter((g) => g.subjects.length > 0);
  const lines = [
    ...about,
    "    {",
    `      user: ${u.user}`,
    `      password: ${password}`,
    "      permissions: {",
    "        publish: {",
    "          allow: [",
    ...renderGroups(allow, "            "),
    "          ]",
  ];
  if (p.publishDeny.length > 0) {
    lines.push("          deny: [", ...renderGroups(p.publishDeny, "            "), "          ]");
  }
  lines.push(
    "        }",
    "        subscribe: {",
    "          allow: [",
    ...renderGroups(p.subscribeAllow, "            "),
    "          ]",
  );
  if (p.subscribeDeny !== undefined && p.subscribeDeny.length > 0) {
    lines.push("          deny: [", ...renderGroups(p.subscribeDeny, "            "), "          ]");
  }
  lines.push("        }");
  if (p.allowResponses) {
    lines.push(
      "        # replies to the requests it received, and nothing else on others' inboxes",
      "        allow_responses: true",
    );
  }
  for (const n of notes) if (n.why !== undefined) lines.push(`        # ${n.why}`);
  lines.push("      }", "    }");
  return lines;
}

/** The `permissions.conf` text: a comment header, then the `authorization` block of every user. */
export function renderNatsPermissions(options: NatsPermissionsOptions): string {
  const nodes = [...new Set(options.nodes)];
  return renderAuthorization(HEADER(nodes), natsPermissions(options));
}

/** An `authorization` block of `users` under a comment `header`. */
export function renderAuthorization(header: readonly string[], users: readonly NatsUserEntry[]): string {
  const lines = [
    ...header.map((l) => (l === "" ? "#" : `# ${l}`)),
    "",
    "authorization {",
    "  # No user, no connection: an empty or unknown user is refused.",
    "  timeout: 2",
    "",
    "  users = [",
  ];
  users.forEach((u, i) => {
    if (i > 0) lines.push("");
    lines.push(...renderUser(u));
  });
  lines.push("  ]", "}", "");
  return lines.join("\n");
}
