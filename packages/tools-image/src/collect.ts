/**
 * What goes into the hypervisor-tools image, taken from the host's Debian `qemu-system-x86`:
 * the emulator, every shared library `ldd` lists for it (the dynamic loader too), qemu's module
 * directory and the libraries of each module, and the firmware directories qemu searches
 * (`qemu-system-x86_64 -L help`: /usr/share/qemu, /usr/share/seabios, /usr/lib/ipxe/qemu).
 * Symlinks are kept as symlinks and followed, so a link and what it points to are both in the
 * image, including links among the parents of a path (`/lib` → `usr/lib` on merged-/usr Debian).
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { PackageNotInstalledError, QemuNotInstalledError, ToolsImageError } from "./errors.js";

const run = promisify(execFile);

/** The Debian package the image is built from. */
export const QEMU_PACKAGE = "qemu-system-x86";

/** One file, directory or symlink of the image. */
export interface RootfsEntry {
  /** Absolute path inside the image (where it is on the host too, unless `source` says). */
  readonly path: string;
  readonly type: "directory" | "file" | "symlink";
  /** Permission bits (`mode & 0o7777`). */
  readonly mode: number;
  /** Bytes of a file; 0 otherwise. */
  readonly size: number;
  /** A symlink's target, as written. */
  readonly linkname?: string;
  /** The host file a file's bytes are read from, when it is not `path` (a jlink'd JRE). */
  readonly source?: string;
  /** A file's bytes, when the builder makes the file (a loader script). */
  readonly content?: Buffer;
}

/** A library `ldd` could not find (the module needing it fails to load, as on the host). */
export interface MissingLibrary {
  readonly library: string;
  readonly neededBy: string;
}

/** The architecture facts of the host the image is built on. */
export interface HostArch {
  /** OCI spelling: `amd64`, `arm64`. */
  readonly oci: string;
  /** Debian's multiarch triplet: `x86_64-linux-gnu`. */
  readonly triplet: string;
}

/** The collected file list of the image. */
export interface QemuRootfs {
  readonly packageName: string;
  /** `dpkg-query -W -f '${Version}' qemu-system-x86`, e.g. `1:7.2+dfsg-7+deb12u18+b3`. */
  readonly qemuVersion: string;
  readonly arch: HostArch;
  /** The emulator's path (the image's entrypoint). */
  readonly binary: string;
  /** The module directory, or null when modules were left out. */
  readonly moduleDir: string | null;
  readonly firmwareDirs: readonly string[];
  /** Sorted by path; parents before children. */
  readonly entries: readonly RootfsEntry[];
  /** Regular files, and their bytes. */
  readonly files: number;
  readonly fileBytes: number;
  readonly missingLibraries: readonly MissingLibrary[];
  /** Things skipped or dangling, one line each. */
  readonly warnings: readonly string[];
}

/** Options of {@link collectQemuRootfs}. */
export interface CollectOptions {
  /** Default `/usr/bin/qemu-system-x86_64`. */
  binary?: string;
  /** Default {@link QEMU_PACKAGE}. */
  packageName?: string;
  /**
   * qemu's module directory (default `/usr/lib/<triplet>/qemu`); null leaves the modules out (an
   * image that cannot use TCG: for tests of that failure).
   */
  moduleDir?: string | null;
  /**
   * Firmware directories, taken whole (default /usr/share/qemu, /usr/share/seabios and, when
   * present, /usr/lib/ipxe/qemu).
   */
  firmwareDirs?: readonly string[];
}

/** The host's architecture, or {@link ToolsImageError} UNSUPPORTED_HOST. */
export function hostArch(nodeArch: string = process.arch): HostArch {
  if (nodeArch === "x64") return { oci: "amd64", triplet: "x86_64-linux-gnu" };
  if (nodeArch === "arm64") return { oci: "arm64", triplet: "aarch64-linux-gnu" };
  throw new ToolsImageError(
    "UNSUPPORTED_HOST",
    `cannot build the hypervisor-tools image on a ${nodeArch} host (supported: x64, arm64)`,
    { context: { arch: nodeArch } },
  );
}

/** The default firmware directories that exist (the first two are required). */
export function defaultFirmwareDirs(): string[] {
  const dirs = ["/usr/share/qemu", "/usr/share/seabios"];
  if (existsSync("/usr/lib/ipxe/qemu")) dirs.push("/usr/lib/ipxe/qemu");
  return dirs;
}

/**
 * The installed version of Debian package `packageName`; {@link PackageNotInstalledError}
 * ({@link QemuNotInstalledError} for qemu's package) when it is not installed or dpkg is missing.
 */
export async function debianPackageVersion(packageName: string = QEMU_PACKAGE): Promise<string> {
  const missing = (why: string, context: Record<string, unknown>, cause?: unknown): Error =>
    packageName === QEMU_PACKAGE
      ? new QemuNotInstalledError(why, { packageName, ...context }, cause)
      : new PackageNotInstalledError(packageName, why, cause);
  let stdout: string;
  try {
    ({ stdout } = await run("dpkg-query", ["-W", "-f", "${Status}\t${Version}", packageName], {
      env: { ...process.env, LC_ALL: "C" },
    }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") throw missing("dpkg-query is not there (not a Debian host?)", {}, err);
    throw missing(
      `the Debian package ${packageName} is not installed (${(e.stderr ?? e.message).trim()})`,
      {},
      err,
    );
  }
  const [status = "", version = ""] = stdout.split("\t");
  if (!status.endsWith(" installed") || version === "") {
    throw missing(`the Debian package ${packageName} is not installed (dpkg status "${status}")`, { status });
  }
  return version;
}

/** One line of `ldd`: a library with its resolved path (undefined: not found). */
export interface LddLine {
  readonly name: string;
  readonly path: string | undefined;
}

/**
 * Parses `ldd` output: `name => /path (0x…)`, `name => not found`, `/lib64/ld-linux… (0x…)`;
 * the vDSO (no file) and "statically linked" are skipped.
 */
export function parseLdd(output: string): LddLine[] {
  const out: LddLine[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const arrow = /^(\S+) => (.*)$/.exec(line);
    if (arrow) {
      const [, name = "", rest = ""] = arrow;
      if (rest.startsWith("not found")) out.push({ name, path: undefined });
      else {
        const p = rest.replace(/\s*\(0x[0-9a-f]+\)$/, "");
        if (p.startsWith("/")) out.push({ name, path: p });
      }
      continue;
    }
    const loader = /^(\/\S+)(?:\s+\(0x[0-9a-f]+\))?$/.exec(line);
    if (loader?.[1]) out.push({ name: path.basename(loader[1]), path: loader[1] });
  }
  return out;
}

/** `ldd file`, parsed; a static file has none. */
async function ldd(file: string): Promise<LddLine[]> {
  try {
    const { stdout } = await run("ldd", [file], { env: { ...process.env, LC_ALL: "C" } });
    return parseLdd(stdout);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === "ENOENT") {
      throw new ToolsImageError("COLLECT_FAILED", "ldd is not there (Debian's libc-bin provides it)", {
        cause: err,
      });
    }
    // "not a dynamic executable" exits 1.
    if (/not a dynamic executable/.test(`${e.stdout ?? ""}${e.stderr ?? ""}`)) return [];
    throw new ToolsImageError("COLLECT_FAILED", `ldd ${file} failed: ${(e.stderr ?? e.message).trim()}`, {
      context: { file },
      cause: err,
    });
  }
}

/** `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const MAX_SYMLINK_HOPS = 40;

/** Builds the entry set: paths with their parents, symlinks and their targets. */
export class Collector {
  readonly entries = new Map<string, RootfsEntry>();
  readonly warnings: string[] = [];
  readonly #walked = new Set<string>();

  /**
   * Adds `abs` and its parents. A symlink (among the parents, or `abs` itself) is added as a
   * link and then followed. With `recurse`, a directory's contents are added too. Returns false
   * when `abs` (or a link target on the way) does not exist.
   */
  async add(abs: string, recurse: boolean, hops = 0): Promise<boolean> {
    if (hops > MAX_SYMLINK_HOPS) {
      this.warnings.push(`${abs}: too many levels of symlinks; left out`);
      return false;
    }
    const parts = abs.split("/").filter((p) => p !== "" && p !== ".");
    let cur = "";
    for (let i = 0; i < parts.length; i++) {
      const candidate = `${cur}/${parts[i] as string}`;
      const isLast = i === parts.length - 1;
      let st;
      try {
        st = await lstat(candidate);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
        throw err;
      }
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink()) {
        const linkname = await readlink(candidate);
        this.entries.set(candidate, { path: candidate, type: "symlink", mode, size: 0, linkname });
        const target = path.resolve(path.dirname(candidate), linkname, ...parts.slice(i + 1));
        const found = await this.add(target, recurse, hops + 1);
        if (!found) this.warnings.push(`${candidate} -> ${linkname}: dangling symlink kept`);
        return true;
      }
      if (st.isDirectory()) {
        if (!this.entries.has(candidate)) {
          this.entries.set(candidate, { path: candidate, type: "directory", mode, size: 0 });
        }
        cur = candidate;
        if (isLast && recurse && !this.#walked.has(candidate)) {
          this.#walked.add(candidate);
          const children = (await readdir(candidate)).sort();
          for (const child of children) await this.add(`${candidate}/${child}`, true, hops);
        }
        continue;
      }
      if (!isLast) return false; // a file where a directory was expected
      if (st.isFile()) {
        this.entries.set(candidate, { path: candidate, type: "file", mode, size: st.size });
      } else {
        this.warnings.push(`${candidate}: not a file, directory or symlink; left out`);
      }
      return true;
    }
    return true;
  }

  /** Directories of the image that are not on the host: `/eve/bin` and its parents. */
  ensureDir(imagePath: string, mode = 0o755): void {
    const parts = imagePath.split("/").filter((p) => p !== "");
    let cur = "";
    for (const part of parts) {
      cur = `${cur}/${part}`;
      if (!this.entries.has(cur)) this.entries.set(cur, { path: cur, type: "directory", mode, size: 0 });
    }
  }

  /** A file the builder makes, at `imagePath`, with `content`. */
  addContent(imagePath: string, content: Buffer, mode: number): void {
    this.ensureDir(path.dirname(imagePath));
    this.entries.set(imagePath, { path: imagePath, type: "file", mode, size: content.length, content });
  }

  /** A host file put at another path of the image. */
  async addFileAs(hostPath: string, imagePath: string): Promise<void> {
    const st = await lstat(hostPath);
    if (!st.isFile()) throw new Error(`${hostPath} is not a regular file`);
    this.ensureDir(path.dirname(imagePath));
    this.entries.set(imagePath, {
      path: imagePath,
      type: "file",
      mode: st.mode & 0o7777,
      size: st.size,
      source: hostPath,
    });
  }

  /** A symlink the builder makes. */
  addSymlink(imagePath: string, linkname: string): void {
    this.ensureDir(path.dirname(imagePath));
    this.entries.set(imagePath, { path: imagePath, type: "symlink", mode: 0o777, size: 0, linkname });
  }

  /**
   * The tree at `hostDir` put at `imageDir` of the image, as it is: files, directories and
   * symlinks (kept as written, never followed). Returns the image paths of its regular files.
   */
  async addTreeAs(hostDir: string, imageDir: string): Promise<string[]> {
    const files: string[] = [];
    const walk = async (host: string, image: string): Promise<void> => {
      const st = await lstat(host);
      const mode = st.mode & 0o7777;
      if (st.isSymbolicLink()) {
        this.addSymlink(image, await readlink(host));
      } else if (st.isDirectory()) {
        this.ensureDir(path.dirname(image));
        this.entries.set(image, { path: image, type: "directory", mode, size: 0 });
        for (const child of (await readdir(host)).sort()) await walk(`${host}/${child}`, `${image}/${child}`);
      } else if (st.isFile()) {
        this.entries.set(image, { path: image, type: "file", mode, size: st.size, source: host });
        files.push(image);
      } else {
        this.warnings.push(`${host}: not a file, directory or symlink; left out`);
      }
    };
    await walk(hostDir, imageDir);
    return files;
  }

  /**
   * Adds the shared libraries (and the dynamic loader) of each host file in `files`, as `ldd`
   * resolves them, at their host paths. Returns what ldd could not find.
   */
  async addLibrariesOf(
    files: readonly string[],
    options: { skipUnder?: string } = {},
  ): Promise<MissingLibrary[]> {
    const linked = await mapLimit(files, 4, async (file) => ({ file, libs: await ldd(file) }));
    const missing: MissingLibrary[] = [];
    const skip = options.skipUnder === undefined ? undefined : `${options.skipUnder}/`;
    for (const { file, libs } of linked) {
      for (const lib of libs) {
        if (skip !== undefined && lib.path?.startsWith(skip)) continue;
        if (lib.path === undefined || !(await this.add(lib.path, false))) {
          missing.push({ library: lib.name, neededBy: file });
        }
      }
    }
    return missing;
  }

  /** The entries, sorted by path (parents before children). */
  sorted(): RootfsEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}

/** Throws {@link QemuNotInstalledError} unless `p` exists. */
async function requirePath(p: string, what: string, packageName: string): Promise<void> {
  try {
    await lstat(p);
  } catch (err) {
    throw new QemuNotInstalledError(`${what} ${p} is missing`, { path: p, packageName }, err);
  }
}

/**
 * Collects the file list of the image from the host (see the module comment). Throws
 * {@link QemuNotInstalledError} when qemu, its modules or its firmware are missing, and
 * {@link ToolsImageError} COLLECT_FAILED when a library of the emulator itself is not found.
 */
export async function collectQemuRootfs(options: CollectOptions = {}): Promise<QemuRootfs> {
  const arch = hostArch();
  const packageName = options.packageName ?? QEMU_PACKAGE;
  const binary = options.binary ?? "/usr/bin/qemu-system-x86_64";
  const moduleDir = options.moduleDir === undefined ? `/usr/lib/${arch.triplet}/qemu` : options.moduleDir;
  const firmwareDirs = [...(options.firmwareDirs ?? defaultFirmwareDirs())];

  const qemuVersion = await debianPackageVersion(packageName).catch((err: unknown) => {
    if (err instanceof PackageNotInstalledError) {
      throw new QemuNotInstalledError(
        `the Debian package ${packageName} is not installed`,
        { packageName },
        err,
      );
    }
    throw err;
  });
  await requirePath(binary, "the emulator", packageName);
  if (moduleDir !== null) await requirePath(moduleDir, "qemu's module directory", packageName);
  for (const dir of firmwareDirs) await requirePath(dir, "the firmware directory", packageName);

  const modules =
    moduleDir === null
      ? []
      : (await readdir(moduleDir))
          .filter((f) => f.endsWith(".so"))
          .sort()
          .map((m) => `${moduleDir}/${m}`);
  // ldd runs the loader once per file: a few at a time.
  const linked = await mapLimit([binary, ...modules], 4, async (file) => ({ file, libs: await ldd(file) }));

  const c = new Collector();
  const missingLibraries: MissingLibrary[] = [];
  for (const { file, libs } of linked) {
    await c.add(file, false);
    for (const lib of libs) {
      if (lib.path === undefined || !(await c.add(lib.path, false))) {
        missingLibraries.push({ library: lib.name, neededBy: file });
      }
    }
    if (file === binary && missingLibraries.length > 0) {
      throw new ToolsImageError(
        "COLLECT_FAILED",
        `${binary} needs libraries ldd cannot find: ${missingLibraries.map((m) => m.library).join(", ")}; reinstall it: apt-get install --reinstall ${packageName}`,
        { context: { binary, missing: missingLibraries.map((m) => m.library) } },
      );
    }
  }
  if (moduleDir !== null) await c.add(moduleDir, false);
  for (const dir of firmwareDirs) await c.add(dir, true);

  for (const m of missingLibraries) {
    c.warnings.push(`${m.neededBy} needs ${m.library}, which is not installed; that module will not load`);
  }
  const entries = c.sorted();
  let files = 0;
  let fileBytes = 0;
  for (const e of entries) {
    if (e.type !== "file") continue;
    files++;
    fileBytes += e.size;
  }
  return {
    packageName,
    qemuVersion,
    arch,
    binary,
    moduleDir,
    firmwareDirs,
    entries,
    files,
    fileBytes,
    missingLibraries,
    warnings: c.warnings,
  };
}
