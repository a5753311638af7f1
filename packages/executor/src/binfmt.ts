/**
 * binfmt_misc entries for native apps of another architecture (DESIGN "Cross-architecture"): the
 * node registers the emulator of its `emulators` seed for an architecture, with flags `F` (the
 * kernel opens the interpreter at registration, so it works in every mount namespace, a task's
 * root holding no emulator) and `P` (the program's own argv[0] is passed on: busybox's shell runs
 * its applets by name, and without it every applet would be told it is the program's path). A
 * qemu-user started under `P` takes the extra argument only when its own name ends in
 * `-binfmt-P`, as Debian's `/usr/libexec/qemu-binfmt/<arch>-binfmt-P` links do; the node makes
 * such a link in its own data dir (`<EVE_DATA_DIR>/binfmt/<entry>-binfmt-P`) and registers it. The kernel's table is the machine's, shared by every node on it:
 * an entry is named after the interpreter it runs (`eve-tasks-<arch>-<8 hex of its path>`), so
 * two nodes (data dirs) on one machine never take each other's, and registering is idempotent
 * (an entry of that name is this interpreter already) and survives an executor restart (it is
 * kernel state). The node never removes an entry: a task's later execs need it, and the entry
 * holds only an open file of a read-only seed. `removeBinfmt` is for whoever registered one
 * outside a node (tests), by name.
 *
 * The magic and mask are those of Debian's qemu-user-static (`/usr/share/binfmts/qemu-<arch>`):
 * an ELF executable or shared object of the architecture's class, byte order and machine.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import type { Arch } from "@eve-tasks/schemas";
import { NodeFactError } from "./errors.js";

/** Where the kernel's binfmt_misc filesystem is mounted. */
export const BINFMT_DIR = "/proc/sys/fs/binfmt_misc";

/** The prefix of every entry the node registers. */
export const BINFMT_PREFIX = "eve-tasks-";

const MASK =
  "\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff";

/** ELF header bytes 0–19 of each foreign architecture (class, data, version, type, machine). */
const MAGIC: Readonly<Partial<Record<Arch, string>>> = {
  aarch64: "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00",
  armv7l: "\\x7fELF\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x28\\x00",
  riscv64: "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xf3\\x00",
};

/** One binfmt_misc entry: its name, the architecture and the interpreter (a host path). */
export interface BinfmtEntry {
  readonly name: string;
  readonly arch: Arch;
  readonly interpreter: string;
}

/** Whether the node can register an emulator for `arch` (it knows the architecture's ELF magic). */
export function binfmtKnows(arch: Arch): boolean {
  return MAGIC[arch] !== undefined;
}

/** The name qemu-user must be started by to expect the argv[0] that flag `P` adds. */
const P_SUFFIX = "-binfmt-P";

/** The link registered for `e` in `linksDir` (pure): it points at `e.interpreter`. */
export function binfmtLauncher(e: BinfmtEntry, linksDir: string): string {
  return `${linksDir}/${e.name}${P_SUFFIX}`;
}

/** The entry of `interpreter` for `arch`: named after both (pure). */
export function binfmtEntry(arch: Arch, interpreter: string): BinfmtEntry {
  const hash = createHash("sha256").update(interpreter).digest("hex").slice(0, 8);
  return { name: `${BINFMT_PREFIX}${arch}-${hash}`, arch, interpreter };
}

/**
 * The line written to `register` for `e` started as `launcher` (see {@link binfmtLauncher}):
 * `:name:M::magic:mask:launcher:FP`.
 *
 * @throws NodeFactError for an architecture without a known magic, or a path that the line
 *   cannot carry.
 */
export function binfmtRegistration(e: BinfmtEntry, launcher: string): string {
  const magic = MAGIC[e.arch];
  if (magic === undefined) throw new NodeFactError(`no binfmt_misc magic known for ${e.arch}`);
  if (!launcher.startsWith("/") || /[\s:\0]/.test(launcher) || launcher.length > 1024) {
    throw new NodeFactError(
      `the emulator ${JSON.stringify(launcher)} cannot be registered with binfmt_misc: ` +
        `an absolute path under 1 KiB without ':' or spaces is needed (move EVE_DATA_DIR)`,
    );
  }
  return `:${e.name}:M::${magic}:${MASK}:${launcher}:FP`;
}

/** What an existing entry says, or undefined when there is none. */
async function readEntry(
  dir: string,
  name: string,
): Promise<{ enabled: boolean; interpreter: string; flags: string } | undefined> {
  let text: string;
  try {
    text = await readFile(`${dir}/${name}`, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const lines = text.split("\n");
  return {
    enabled: lines[0] === "enabled",
    interpreter: lines.find((l) => l.startsWith("interpreter "))?.slice("interpreter ".length) ?? "",
    flags: lines.find((l) => l.startsWith("flags: "))?.slice("flags: ".length) ?? "",
  };
}

/**
 * Mounts binfmt_misc at {@link BINFMT_DIR} when it is not there (as systemd's
 * `proc-sys-fs-binfmt_misc.mount` does), then checks it is on.
 */
async function ensureBinfmtMounted(dir: string): Promise<void> {
  const status = (): Promise<string | undefined> =>
    readFile(`${dir}/status`, "utf8").then(
      (s) => s.trim(),
      () => undefined,
    );
  let s = await status();
  if (s === undefined) {
    const { execFile } = await import("node:child_process");
    await mkdir(dir, { recursive: true }).catch(() => undefined);
    await new Promise<void>((resolve, reject) =>
      execFile("mount", ["-t", "binfmt_misc", "binfmt_misc", dir], (err, _out, stderr) =>
        err ? reject(new Error(`mount binfmt_misc: ${stderr.trim() || err.message}`)) : resolve(),
      ),
    ).catch((err: unknown) => {
      throw new NodeFactError(
        `cannot run another architecture's programs: binfmt_misc is not mounted at ${dir} and ` +
          `mounting it failed (${(err as Error).message})`,
      );
    });
    s = await status();
  }
  if (s !== "enabled") {
    throw new NodeFactError(
      `cannot run another architecture's programs: binfmt_misc at ${dir} is ${s ?? "absent"}`,
    );
  }
}

/**
 * Registers `e`, started as its link in `linksDir` (made or renewed here), unless an entry of
 * its name already runs that link with `P` (idempotent). An entry of its name that runs the bare
 * interpreter (flag `F` alone, as nodes registered before `P`) is this node's own and is
 * replaced; any other entry of that name, or a disabled one, is an error: the node removes
 * nothing else.
 *
 * @throws NodeFactError when binfmt_misc is not usable or the kernel refuses the entry.
 */
export async function registerBinfmt(
  e: BinfmtEntry,
  o: { linksDir: string; dir?: string },
): Promise<"registered" | "present"> {
  const dir = o.dir ?? BINFMT_DIR;
  const launcher = binfmtLauncher(e, o.linksDir);
  await ensureBinfmtMounted(dir);
  const ours = (x: { enabled: boolean; interpreter: string; flags: string } | undefined): boolean =>
    x !== undefined && x.enabled && x.interpreter === launcher && x.flags.includes("P");
  const existing = await readEntry(dir, e.name);
  // The kernel opens the interpreter at registration (F): the link only has to be right then.
  await mkdir(o.linksDir, { recursive: true });
  const temp = `${launcher}.${process.pid}.tmp`;
  await rm(temp, { force: true });
  await symlink(e.interpreter, temp);
  await rename(temp, launcher);
  if (existing) {
    if (ours(existing)) return "present";
    if (!(existing.enabled && existing.interpreter === e.interpreter)) {
      throw new NodeFactError(
        `binfmt_misc entry ${e.name} is ${existing.enabled ? `for ${existing.interpreter}` : "disabled"}, ` +
          `not for ${launcher}: remove it (echo -1 > ${dir}/${e.name})`,
      );
    }
    await writeFile(`${dir}/${e.name}`, "-1");
  }
  try {
    await writeFile(`${dir}/register`, binfmtRegistration(e, launcher));
  } catch (err) {
    // Another executor of this node registered it meanwhile.
    if (ours(await readEntry(dir, e.name))) return "present";
    throw new NodeFactError(
      `cannot register the emulator ${e.interpreter} for ${e.arch} with binfmt_misc: ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
  }
  return "registered";
}

/** Removes the entry `name` (for whoever registered it outside a node: tests). Absent is done. */
export async function removeBinfmt(name: string, dir: string = BINFMT_DIR): Promise<void> {
  if (!name.startsWith(BINFMT_PREFIX) || name.includes("/")) {
    throw new Error(`${name} is not an eve-tasks binfmt_misc entry`);
  }
  try {
    await writeFile(`${dir}/${name}`, "-1");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
}
