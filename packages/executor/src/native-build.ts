/**
 * The executor's C helpers (the task logger, the netns helper), built from their shipped source
 * with the node's gcc the first time an executor needs them, into `<dataDir>/bin/<name>-<hash>`:
 * the hash names the source, flags and libraries, so an updated source gets a new binary and
 * processes running the old one keep it. Built into a temporary name and renamed into place.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { NETNS_HELPER_LIBS, NETNS_HELPER_SOURCE } from "@eve-tasks/network";
import { NodeFactError } from "./errors.js";

const execFileAsync = promisify(execFile);

/** gcc's flags for every helper. */
const CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"];

/** A helper to build. */
export interface NativeHelper {
  /** The binary's name, before its hash. */
  readonly name: string;
  /** Its C source (absolute path). */
  readonly source: string;
  /** Libraries to link (`-lmnl`). */
  readonly libs?: readonly string[];
  /** The Debian packages with the headers it needs besides libc6-dev, named when the build fails. */
  readonly devPackages?: readonly string[];
}

/**
 * Builds `helper` unless this node has it already.
 *
 * @returns the binary's absolute path.
 * @throws NodeFactError when gcc or a header is missing, or gcc fails.
 */
export async function ensureNativeBinary(dataDir: string, helper: NativeHelper): Promise<string> {
  const libs = helper.libs ?? [];
  const source = await readFile(helper.source);
  const hash = createHash("sha256")
    .update([...CFLAGS, ...libs].join(" "))
    .update("\0")
    .update(source)
    .digest("hex");
  const bin = join(dataDir, "bin");
  const path = join(bin, `${helper.name}-${hash.slice(0, 16)}`);
  const built = await stat(path).then(
    (s) => s.isFile() && (s.mode & 0o111) !== 0,
    () => false,
  );
  if (built) return path;
  await mkdir(bin, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await execFileAsync("gcc", [...CFLAGS, "-o", tmp, helper.source, ...libs]);
    await chmod(tmp, 0o755);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const packages = ["gcc", "libc6-dev", ...(helper.devPackages ?? [])].join(" ");
    const why =
      e.code === "ENOENT"
        ? `gcc is not installed (apt-get install ${packages})`
        : `${(e.stderr ?? e.message).trim()} (it needs apt-get install ${packages})`;
    throw new NodeFactError(`cannot build ${helper.name} from ${helper.source}: ${why}`, undefined, {
      cause: err,
    });
  }
  return path;
}

/** Builds the netns helper (`@eve-tasks/network`'s `native/eve-netns.c`, with libmnl and libnftables). */
export function ensureNetnsHelper(dataDir: string): Promise<string> {
  return ensureNativeBinary(dataDir, {
    name: "eve-netns",
    source: NETNS_HELPER_SOURCE,
    libs: NETNS_HELPER_LIBS,
    devPackages: ["libmnl-dev", "libnftables-dev"],
  });
}
