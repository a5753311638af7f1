#!/usr/bin/env node
// Renders a hub's permissions.conf (users admin, controller, viewer, and device-<node> for every
// device) from the one source `npm run hub` uses too (@eve-tasks/embedded renderHubNatsPermissions),
// and makes the missing password files of those users (and `route`) in a credentials directory.
//
//   node deploy/hub/render-hub.mjs --device dev1 --device dev2 \
//     [--credentials /var/lib/eve-tasks/nats-credentials --write-env /etc/eve-tasks/nats-users.env] \
//     > /etc/eve-tasks/nats/permissions.conf
//
// With --write-env it also writes nats-server's environment (EVE_NATS_<USER>_PASSWORD, mode 0600).
// A device joins: render again with it, then `nats-server --signal reload` on each hub server, then
// provision-devices.mjs. Run from the built project (`npm ci && npm run build`).
import { chmod, writeFile } from "node:fs/promises";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  ensureNatsCredentials,
  hubUsers,
  natsPasswordVariable,
  renderHubNatsPermissions,
} from "@eve-tasks/embedded";

const { values } = parseArgs({
  options: {
    device: { type: "string", multiple: true, default: [] },
    credentials: { type: "string" },
    "write-env": { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(
    "usage: render-hub.mjs --device <node> [--device ...] [--credentials <dir> [--write-env <file>]]\n",
  );
  process.exit(0);
}
try {
  if (values.device.length === 0) throw new Error("give at least one --device (a device's EVE_NODE)");
  const text = renderHubNatsPermissions({ devices: values.device });
  if (values.credentials !== undefined) {
    const passwords = await ensureNatsCredentials(values.credentials, [...hubUsers(values.device), "route"]);
    if (values["write-env"] !== undefined) {
      const lines = [...passwords].map(([u, p]) => `${natsPasswordVariable(u)}=${p}`);
      await writeFile(values["write-env"], `${lines.join("\n")}\n`, { mode: 0o600 });
      await chmod(values["write-env"], 0o600);
    }
  } else if (values["write-env"] !== undefined) {
    throw new Error("--write-env needs --credentials (where the passwords are)");
  }
  process.stdout.write(text);
} catch (err) {
  process.stderr.write(`render-hub: ${err.message}\n`);
  process.exit(1);
}
