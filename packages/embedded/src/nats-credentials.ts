/**
 * The NATS passwords `npm start` generates, and the nats-server config it runs with them.
 *
 * Layout (under EVE_DATA_DIR; every path here is the documented interface, see README.md):
 *   <data>/nats-credentials/            mode 0700, the launcher's user (root)
 *   <data>/nats-credentials/<user>.password   mode 0600: the password, one line
 *   <data>/nats/nats-server.conf        the server's config: `include ./permissions.conf`
 *   <data>/nats/permissions.conf        renderNatsPermissions for the node (deploy/'s, same source)
 * Passwords are generated once (kept across starts: a restarted server and the workers agree)
 * and reach nats-server as EVE_NATS_<USER>_PASSWORD in its environment, exactly as deploy/'s
 * systemd unit passes them; clients read their own file (NATS_USER + NATS_PASSWORD_FILE).
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NatsCredentialsStoreError } from "./errors.js";
import { NATS_USERS, natsPasswordVariable, renderNatsPermissions } from "./nats-permissions.js";
import type { NatsUser } from "./nats-permissions.js";

/** The credentials directory's name under the data dir. */
export const NATS_CREDENTIALS_DIRNAME = "nats-credentials";

/** `<dataDir>/nats-credentials`: where `npm start` keeps the NATS passwords. */
export function natsCredentialsDir(dataDir: string): string {
  return join(dataDir, NATS_CREDENTIALS_DIRNAME);
}

/** `<dir>/<user>.password`: the file holding `user`'s password. */
export function natsPasswordFile(dir: string, user: string): string {
  return join(dir, `${user}.password`);
}

/**
 * What a password must look like: nats-server parses it as a config value, so letters and digits
 * only, starting with a letter (a leading digit can make it a number), at least 16 characters.
 * deploy/nats/check-passwords.sh applies the same rule.
 */
export const NATS_PASSWORD_PATTERN = /^[A-Za-z][A-Za-z0-9]{15,}$/;

/** A fresh password: `p` and 48 hex digits (192 random bits). */
export function generateNatsPassword(): string {
  return `p${randomBytes(24).toString("hex")}`;
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

const ownUid = (): number | undefined =>
  typeof process.getuid === "function" ? process.getuid() : undefined;

/** Makes `dir` (mode 0700) or checks it: ours, and nobody else's to read. */
async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const st = await stat(dir);
  const uid = ownUid();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid)) {
    throw new NatsCredentialsStoreError(
      `${dir} must be a directory owned by this user (uid ${String(uid)}): it holds the NATS passwords`,
      { context: { dir, uid: st.uid } },
    );
  }
  if ((st.mode & 0o777) !== DIR_MODE) await chmod(dir, DIR_MODE);
}

/** Reads and checks `user`'s password file; fixes its mode to 0600. Undefined when there is none. */
async function readExisting(file: string, user: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new NatsCredentialsStoreError(`cannot read ${file}: ${(err as Error).message}`, {
      context: { file },
      cause: err,
    });
  }
  const password = text.trim();
  if (!NATS_PASSWORD_PATTERN.test(password)) {
    throw new NatsCredentialsStoreError(
      `${file} does not hold a usable password for NATS user ${user}: letters and digits only, ` +
        `starting with a letter, at least 16 characters (delete the file to have a new one generated)`,
      { context: { file, user } },
    );
  }
  const st = await stat(file);
  if ((st.mode & 0o777) !== FILE_MODE) await chmod(file, FILE_MODE);
  return password;
}

/** Writes a new password file, mode 0600, atomically; an existing file (a concurrent writer) wins. */
async function writeNew(file: string): Promise<string> {
  const password = generateNatsPassword();
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, "wx", FILE_MODE);
  try {
    await fh.writeFile(`${password}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  return password;
}

/**
 * The passwords of `users` in `dir`: read when their file exists (and checked), generated once
 * otherwise. The directory is made mode 0700 and every file mode 0600.
 *
 * @throws {NatsCredentialsStoreError} when the directory is someone else's or a file holds no
 *   usable password.
 */
export async function ensureNatsCredentials<U extends string = NatsUser>(
  dir: string,
  users: readonly U[] = NATS_USERS as unknown as readonly U[],
): Promise<ReadonlyMap<U, string>> {
  await ensurePrivateDir(dir);
  const passwords = new Map<U, string>();
  for (const user of users) {
    const file = natsPasswordFile(dir, user);
    passwords.set(user, (await readExisting(file, user)) ?? (await writeNew(file)));
  }
  return passwords;
}

/** What {@link prepareNatsAuth} made: the config to run nats-server with, and who may connect. */
export interface NatsAuth {
  /** The main config (`-c`): it includes {@link permissionsFile}. */
  readonly configFile: string;
  /** The users and permissions, rendered for the node. */
  readonly permissionsFile: string;
  /** Where the password files are. */
  readonly credentialsDir: string;
  /** nats-server's environment additions: EVE_NATS_<USER>_PASSWORD of every user. */
  readonly env: Readonly<Record<string, string>>;
  /** The password file of `user`, for a client's NATS_PASSWORD_FILE. */
  passwordFile(user: NatsUser): string;
}

/** Options of {@link prepareNatsAuth}. */
export interface PrepareNatsAuthOptions {
  /** Where the password files are kept: usually natsCredentialsDir(EVE_DATA_DIR). */
  readonly credentialsDir: string;
  /** Where the two config files are written (at every start): usually the JetStream store dir. */
  readonly configDir: string;
  /** The node(s) whose workers use this server (EVE_NODE). */
  readonly nodes: readonly string[];
  /** More of the main config, after the include (device mode: renderDeviceLeafConfig). */
  readonly extraConfig?: string;
}

const MAIN_CONFIG = `# eve-tasks: the nats-server of \`npm start\`, written at each start by @eve-tasks/embedded.
# Its users and permissions are deploy/'s: permissions.conf, rendered for this node from the same
# source as deploy/nats/permissions.conf. Their passwords come from the environment
# (EVE_NATS_<USER>_PASSWORD), read by the launcher from <EVE_DATA_DIR>/nats-credentials/.
# The listen address, port, JetStream and its store are given on the command line.
include ./permissions.conf
`;

/**
 * Makes everything a nats-server with the project's users needs: the passwords (generated once),
 * the permissions rendered for `nodes`, a main config including them, and the environment that
 * hands the passwords to nats-server. Start it with `startNatsServer({ configFile, env, ... })`.
 */
export async function prepareNatsAuth(options: PrepareNatsAuthOptions): Promise<NatsAuth> {
  const passwords = await ensureNatsCredentials(options.credentialsDir);
  await mkdir(options.configDir, { recursive: true });
  const permissionsFile = join(options.configDir, "permissions.conf");
  const configFile = join(options.configDir, "nats-server.conf");
  await writeFile(permissionsFile, renderNatsPermissions({ nodes: options.nodes }));
  await writeFile(configFile, MAIN_CONFIG + (options.extraConfig ?? ""));
  const env: Record<string, string> = {};
  for (const [user, password] of passwords) env[natsPasswordVariable(user)] = password;
  const credentialsDir = options.credentialsDir;
  return {
    configFile,
    permissionsFile,
    credentialsDir,
    env,
    passwordFile: (user) => natsPasswordFile(credentialsDir, user),
  };
}
