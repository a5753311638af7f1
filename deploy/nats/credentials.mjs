#!/usr/bin/env node
// Makes (once) and keeps the NATS passwords of a node, the same way `npm start` does, and writes
// the environment file nats-server reads them from:
//
//   node /opt/eve-tasks/deploy/nats/credentials.mjs /var/lib/eve-tasks/nats-credentials /etc/eve-tasks/nats-users.env
//
// - <credentials dir>/<user>.password, mode 0600 in a mode 0700 dir (root's): one per user of
//   permissions.conf (admin, controller, viewer and the four workers). A file that exists is kept
//   (checked: letters and digits, starting with a letter, at least 16); a missing one is generated.
//   Workers read their own (NATS_USER + NATS_PASSWORD_FILE, set by their systemd units); the CLI
//   run as root with EVE_DATA_DIR=/var/lib/eve-tasks finds controller's and viewer's there.
// - <env file>, mode 0600: EVE_NATS_<USER>_PASSWORD=... for eve-tasks-nats.service
//   (EnvironmentFile=), derived from the files: run this again after changing a password file.
// Run from the built project (`npm ci && npm run build`).
import { open, rename } from "node:fs/promises";
import process from "node:process";
import { ensureNatsCredentials, natsPasswordVariable } from "@eve-tasks/embedded";

const [dir, envFile] = process.argv.slice(2);
if (dir === undefined || envFile === undefined || process.argv.length > 4) {
  process.stderr.write("usage: credentials.mjs <credentials dir> <nats-server env file>\n");
  process.exit(2);
}
try {
  const passwords = await ensureNatsCredentials(dir);
  const lines = [
    "# eve-tasks: nats-server's user passwords, written by deploy/nats/credentials.mjs from",
    `# ${dir}/<user>.password. Do not edit: change a password file and run it again.`,
    ...[...passwords].map(([user, password]) => `${natsPasswordVariable(user)}=${password}`),
    "",
  ];
  const tmp = `${envFile}.${process.pid}.tmp`;
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.writeFile(lines.join("\n"));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, envFile);
  process.stdout.write(
    `${passwords.size} NATS users: passwords in ${dir}, nats-server's environment in ${envFile}\n`,
  );
} catch (err) {
  process.stderr.write(`credentials: ${err.message}\n`);
  process.exit(1);
}
