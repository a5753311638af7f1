/**
 * nats-server configuration of a fleet (DESIGN.md "Public contract v2 → Fleet"): the hub's
 * servers (a cluster with JetStream domain `hub` and a leafnode listener) and their users, and a
 * device's server (a leaf node of the hub, JetStream domain = its node name). The one source of
 * `npm run hub`, of device mode under `npm start` and of deploy/hub/.
 *
 * What a device may do on the hub is enforced by the hub, with the device's own leaf user
 * `device-<node>` (a device's config is the device's to change): subjects the user may publish
 * are what the device may send into the hub, subjects it may subscribe to what the hub sends to
 * it (nats-server's leaf-node rule). Tried on nats-server 2.9.10 with a device trying to read
 * another device's bucket, the hub's aggregate streams, another device's domain and a write to
 * its own hub bucket: all refused (test/fleet.test.ts repeats it).
 */
import {
  HUB_DOMAIN,
  FLEET_NODE_PATTERN,
  hubControllerBucket,
  natsInboxPrefix,
  nodeReplyPrefix,
  stopTasksSubject,
} from "@eve-tasks/schemas";
import { READ_LOGS, natsPasswordVariable, readEverything, renderAuthorization } from "./nats-permissions.js";
import type { NatsUserEntry, SubjectGroup } from "./nats-permissions.js";

/** The hub's own users (people, controllers and operators on the hub side). */
export const HUB_USERS = ["admin", "controller", "viewer"] as const;

/** The hub user of device `node`'s leaf connection. */
export function deviceUser(node: string): string {
  return `device-${node}`;
}

function checkNodes(nodes: readonly string[]): string[] {
  const unique = [...new Set(nodes)];
  const vars = new Map<string, string>();
  for (const n of unique) {
    if (!FLEET_NODE_PATTERN.test(n))
      throw new Error(`invalid device name ${JSON.stringify(n)}: a letter, then letters, digits, '-' or '_'`);
    const v = natsPasswordVariable(deviceUser(n));
    const other = vars.get(v);
    if (other !== undefined)
      throw new Error(`devices ${other} and ${n} would share the password variable ${v}: rename one`);
    vars.set(v, n);
  }
  return unique;
}

/**
 * What device `node`'s leaf connection may do on the hub:
 * - into the hub (publish): create (and delete) the consumer its `controller` mirror reads its
 *   own `controller-<node>` with, answer that consumer's flow control, deliver its streams to
 *   the hub's sources of them (`eve.fleet.<node>.s.…`), reply to the hub's API requests and to
 *   the hub users' signal and task log requests made to it;
 * - out of the hub (subscribe): its own JetStream domain's API (the hub's sources of its
 *   `task-executor` and `TASK_EVENTS`, and hub-side people reading it), its mirror's deliveries
 *   (`eve.fleet.<node>.m.…`), the flow control of the hub's consumers of its streams, signal
 *   and task log requests for its node (its task-executor answers them), API replies.
 *
 * Requests from the hub to a device's executor (docs/fleet.md "Logs and signals from the hub"):
 * nats-server forwards interest across a leaf connection only where the leaf's user may receive
 * (the executor's subscriptions, hub-bound) or send (a requester's reply subscription,
 * device-bound); `allow_responses` lets a device answer but does not bring the requester's
 * interest to it. So the device may send on the hub users' `<inbox>.fleet.<node>.>`
 * (nodeReplyPrefix; the CLI asks for its replies there) and nowhere else in their inboxes. On
 * nats-server 2.9.10 a leaf checks a queue subscription (the executor's service endpoints are in
 * queue group `q`) against the hub's list as the one string `<subject> <queue>`, which only a
 * wildcard last token matches: hence `eve.rpc.task-executor.<node>.*`, with the node-local
 * `stop-tasks` (the launcher's) denied; the hub checks subject and queue apart, so the deny holds.
 *
 * Nothing else: not another device's bucket or domain, not the hub's aggregates, not a write to
 * any bucket of the hub.
 */
export function devicePermissionsOnHub(node: string): NatsUserEntry {
  const stream = `KV_${hubControllerBucket(node)}`;
  const api = `$JS.${HUB_DOMAIN}.API`;
  const fleet = `eve.fleet.${node}.>`;
  const group = (why: string, subjects: string[]): SubjectGroup => ({ why, subjects });
  return {
    user: deviceUser(node),
    about: [
      `the leaf connection of device ${node}: its own controller-${node} (the mirror's consumer) and its`,
      `own domain $JS.${node}.API (the hub's sources of its status and events); nothing else`,
    ],
    permissions: {
      publishAllow: [
        group(`its controller mirror's consumer on ${stream} (ephemeral create, delete on reset)`, [
          `${api}.CONSUMER.CREATE.${stream}`,
          `${api}.CONSUMER.CREATE.${stream}.>`,
          `${api}.CONSUMER.DELETE.${stream}.*`,
          `$JS.FC.${stream}.>`,
        ]),
        group("deliveries of its streams to the hub's sources, and its mirror's traffic", [fleet]),
        group("replies to the servers' internal JetStream API requests", ["$JSC.R.>"]),
        group(
          "replies of its task-executor to the hub users' requests to it (their <inbox>.fleet.<node>.>)",
          HUB_USERS.map((u) => `${nodeReplyPrefix(natsInboxPrefix(u), node)}.>`),
        ),
      ],
      publishDeny: [],
      subscribeAllow: [
        group("its JetStream domain (the hub's sources of its streams; hub-side readers)", [
          `$JS.${node}.API.>`,
        ]),
        group("its mirror's deliveries, and its streams' traffic to the hub", [fleet]),
        group("flow control of the hub's consumers of its streams", [
          "$JS.FC.KV_task-executor.>",
          "$JS.FC.TASK_EVENTS.>",
        ]),
        group(
          "requests to its task-executor (signal, logs); a wildcard, as nats-server 2.9 matches a leaf's queue subscriptions",
          [`eve.rpc.task-executor.${node}.*`],
        ),
        group("replies to the servers' internal JetStream API requests", ["$JSC.R.>"]),
      ],
      subscribeDeny: [
        group("stopping every task of the node is the node's own launcher's, never the hub's", [
          stopTasksSubject(node),
        ]),
      ],
      allowResponses: true,
    },
  };
}

/** The hub's users: admin, controller (writes every device's `controller-<node>`), viewer, and a leaf user per device. */
export function hubNatsPermissions(options: { devices: readonly string[] }): NatsUserEntry[] {
  const devices = checkNodes(options.devices);
  const inbox = (user: string): SubjectGroup => ({
    why: "its replies and consumer deliveries: its own inbox prefix only",
    subjects: [`${natsInboxPrefix(user)}.>`],
  });
  const plainSubs: SubjectGroup = {
    why: "plain subscriptions to changes and events",
    subjects: ["$KV.>", "eve.events.>"],
  };
  return [
    {
      user: "admin",
      about: ["operators and the hub's provisioner (buckets, sources): everything"],
    },
    {
      user: "controller",
      about: [
        "people and controllers: write every device's controller-<node>, read everything (task logs too), signal",
      ],
      permissions: {
        publishAllow: [
          {
            why: "each device's desired state (put and delete)",
            subjects: devices.map((n) => `$KV.${hubControllerBucket(n)}.>`),
          },
          ...readEverything(),
          { why: "signal an app's anchor on its node", subjects: ["eve.rpc.task-executor.*.signal"] },
          READ_LOGS,
        ],
        publishDeny: [],
        subscribeAllow: [inbox("controller"), plainSubs],
        allowResponses: false,
      },
    },
    {
      user: "viewer",
      about: ["read-only: every device's desired state, statuses, events and task logs"],
      permissions: {
        publishAllow: [...readEverything(), READ_LOGS],
        publishDeny: [],
        subscribeAllow: [inbox("viewer"), plainSubs],
        allowResponses: false,
      },
    },
    ...devices.map(devicePermissionsOnHub),
  ];
}

/** Every user of a hub with `devices`, in the order of its config. */
export function hubUsers(devices: readonly string[]): string[] {
  return [...HUB_USERS, ...checkNodes(devices).map(deviceUser)];
}

/** The hub's `permissions.conf`. */
export function renderHubNatsPermissions(options: { devices: readonly string[] }): string {
  const devices = checkNodes(options.devices);
  return renderAuthorization(
    [
      "eve-tasks: the users of a fleet's hub (JetStream domain hub). GENERATED by @eve-tasks/embedded",
      `(renderHubNatsPermissions) for the devices: ${devices.join(", ") || "(none)"}.`,
      "Render it again when a device joins: node deploy/hub/render-hub.mjs --device <node> ...",
      "Passwords from the environment: " +
        hubUsers(devices)
          .map((u) => natsPasswordVariable(u))
          .join(", "),
      "",
      "Each device's leaf connection logs in as device-<node>: what that user may publish is what the",
      "device may send into the hub, what it may subscribe to is what the hub sends to it. It reaches",
      "its own controller-<node> (its mirror's consumer) and lets the hub reach its own domain (the",
      "sources of its task-executor and TASK_EVENTS), nothing else.",
    ],
    hubNatsPermissions({ devices }),
  );
}

/** Ports of one hub server. */
export interface HubServerPorts {
  readonly client: number;
  readonly cluster: number;
  readonly leaf: number;
}

/**
 * The ports of hub server `index` (0-based) from a base client port: clients `base + i`,
 * routes `base + 100 + i`, leaf nodes `base + 200 + i` (`npm run hub`'s default base 5222 gives
 * 5222-5224, 5322-5324, 5422-5424: clear of a device's 4222 and of deploy's 6222/7422).
 */
export function hubServerPorts(base: number, index: number): HubServerPorts {
  return { client: base + index, cluster: base + 100 + index, leaf: base + 200 + index };
}

/**
 * The main config of one hub server: JetStream domain `hub`, a cluster `eve-hub` whose routes
 * log in as `route` ($EVE_NATS_ROUTE_PASSWORD; route URLs with the password in $EVE_NATS_ROUTES),
 * a leafnode listener whose connections log in as device users (no `authorization` of its own:
 * leaf connections then use the users of permissions.conf, with their permissions), and the
 * users (`include ./permissions.conf`). Address, client port and store come from the command line.
 */
export function renderHubServerConfig(o: {
  host: string;
  clusterPort: number;
  leafPort: number;
  /** False for a hub of one server: no cluster block (a lone clustered server waits for peers). */
  cluster?: boolean;
}): string {
  const cluster =
    o.cluster === false
      ? "# One server: no cluster.\n"
      : `cluster {
  name: eve-hub
  listen: "${o.host}:${o.clusterPort}"
  authorization {
    user: route
    password: $EVE_NATS_ROUTE_PASSWORD
    timeout: 2
  }
  routes: $EVE_NATS_ROUTES
}
`;
  return `# eve-tasks: one server of a fleet's hub, written by @eve-tasks/embedded (renderHubServerConfig).
jetstream {
  domain: ${HUB_DOMAIN}
}
${cluster}# Devices connect here as leaf nodes, each as its own user device-<node> (permissions.conf).
leafnodes {
  listen: "${o.host}:${o.leafPort}"
}
max_payload: 2MB
include ./permissions.conf
`;
}

/** The environment variable holding a device's hub leaf URLs (a config array) for nats-server. */
export const HUB_LEAF_URLS_VARIABLE = "EVE_NATS_HUB_LEAF_URLS";

/**
 * What a device's main config adds to the node's (users and permissions stay the node's own):
 * JetStream domain = the node's name, and one leaf remote to the hub, its URLs (with the
 * device's credentials) from $EVE_NATS_HUB_LEAF_URLS. Across the link: no plain `$KV.>`,
 * `$OBJ.>`, `$JS.API.>` (nats-server denies them between domains by itself; repeated) and no
 * `eve.events.>` (the hub reads events through its sources, so they never arrive twice).
 */
export function renderDeviceLeafConfig(o: { node: string }): string {
  if (!FLEET_NODE_PATTERN.test(o.node))
    throw new Error(
      `invalid node name ${JSON.stringify(o.node)} for a device: a letter, then letters, digits, '-' or '_'`,
    );
  return `# Device mode: a leaf node of the fleet's hub, JetStream domain = EVE_NODE.
jetstream {
  domain: ${o.node}
}
leafnodes {
  reconnect: 2
  remotes: [
    {
      urls: $${HUB_LEAF_URLS_VARIABLE}
      deny_imports: ["$KV.>", "$OBJ.>", "$JS.API.>", "eve.events.>"]
      deny_exports: ["$KV.>", "$OBJ.>", "$JS.API.>", "eve.events.>"]
    }
  ]
}
`;
}

/** A bad EVE_HUB_LEAF_URL. */
export class HubLeafUrlError extends Error {
  override readonly name = "HubLeafUrlError";
}

/**
 * The hub leaf URLs a device connects with, from EVE_HUB_LEAF_URL (one or more `nats-leaf://`
 * URLs, comma-separated: the hub's servers): a URL without a user gets `device-<node>`, one
 * without a password gets `password` (from the password file), if any.
 *
 * @throws {HubLeafUrlError} for a URL that is not `nats-leaf://host:port` (or `tls://`), or one
 *   with neither a password nor a password file.
 */
export function hubLeafUrls(value: string, node: string, password: string | undefined): string[] {
  const parts = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (parts.length === 0) throw new HubLeafUrlError("EVE_HUB_LEAF_URL is empty");
  return parts.map((raw) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new HubLeafUrlError(
        `EVE_HUB_LEAF_URL: ${JSON.stringify(raw)} is not a URL (nats-leaf://host:7422)`,
      );
    }
    if (!["nats-leaf:", "tls:", "nats:"].includes(u.protocol) || u.hostname === "" || u.port === "")
      throw new HubLeafUrlError(
        `EVE_HUB_LEAF_URL: ${u.protocol}//${u.host} must be nats-leaf://host:port (the hub's leafnode listener)`,
      );
    if (u.username === "") u.username = deviceUser(node);
    if (u.password === "") {
      if (password === undefined)
        throw new HubLeafUrlError(
          `EVE_HUB_LEAF_URL: no password for ${decodeURIComponent(u.username)} at ${u.host}: put it in the URL ` +
            `or in the file EVE_HUB_LEAF_PASSWORD_FILE names (default <EVE_DATA_DIR>/nats-credentials/hub-leaf.password)`,
        );
      u.password = password;
    }
    return u.toString();
  });
}

/** `urls` as the value of $EVE_NATS_HUB_LEAF_URLS: a config array of quoted strings. */
export function leafUrlsConfigValue(urls: readonly string[]): string {
  return `[${urls.map((u) => JSON.stringify(u)).join(", ")}]`;
}
