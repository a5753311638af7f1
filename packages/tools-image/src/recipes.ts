/**
 * The built-in runtime images and what each is made of, from the host's Debian packages:
 *
 * - `default`: qemu-system-x86_64 (its libraries, modules and firmware) and a loader that turns
 *   the task's `EVE_TASK_*` environment into qemu's command line;
 * - `jvm`: a JRE made with jlink from Debian's openjdk-17 ({@link JVM_MODULES}) and a loader that
 *   runs the app's JAR sized from the task;
 * - `emulators`: qemu-user-static for aarch64, arm and riscv64, which the node registers with
 *   binfmt_misc for native apps of those architectures (no loader: it is never an anchor).
 *
 * A loader needs a shell: each image with one has Debian's static busybox at `/eve/bin/busybox`
 * (`/eve/bin/sh` a link to it) and its loader at `/eve/loader`, the image's Entrypoint. Everything
 * of the contract is in the image config's labels ({@link RUNTIME_LABELS}).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { open, readFile, realpath, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { RUNTIME_CONTRACT_VERSION, RUNTIME_LABELS } from "@eve-tasks/schemas";
import { Collector, collectQemuRootfs, debianPackageVersion, hostArch } from "./collect.js";
import type { CollectOptions, HostArch, RootfsEntry } from "./collect.js";
import { PackageNotInstalledError, ToolsImageError } from "./errors.js";

const run = promisify(execFile);

/** The names of the built-in runtimes, as registered under HypervisorToolsConfig. */
export const BUILT_IN_RUNTIMES = ["default", "jvm", "emulators"] as const;
/** A built-in runtime. */
export type BuiltInRuntime = (typeof BUILT_IN_RUNTIMES)[number];

/** Labels the built-in images carry besides the contract's. */
export const LABELS = {
  /** Which built-in runtime the image is. */
  builtIn: "org.lfedge.eve-tasks.built-in",
  /** sha256 of what the image was made from (package versions, loader, options): its cache key. */
  builtInInputs: "org.lfedge.eve-tasks.built-in-inputs",
  hypervisor: "org.lfedge.eve-tasks.hypervisor",
  qemuVersion: "org.lfedge.eve-tasks.qemu-version",
  qemuPackage: "org.lfedge.eve-tasks.qemu-package",
  jvmModules: "org.lfedge.eve-tasks.jvm-modules",
} as const;

/** The PATH of the images' processes. */
export const IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Where a loader and its shell are in an image. */
export const LOADER_PATH = "/eve/loader";
export const BUSYBOX_PATH = "/eve/bin/busybox";
/** Debian's static busybox on the host (package busybox-static). */
export const HOST_BUSYBOX = "/bin/busybox";
export const BUSYBOX_PACKAGE = "busybox-static";

/** Where the jlink'd JRE is in the `jvm` image. */
export const JRE_DIR = "/opt/eve-jre";
/** The Debian package jlink and the JDK's modules come from. */
export const JDK_PACKAGE = "openjdk-17-jdk-headless";
/** jlink, from {@link JDK_PACKAGE}, on a host of architecture `arch`. */
export function jlinkPath(arch: HostArch): string {
  return `/usr/lib/jvm/java-17-openjdk-${arch.oci}/bin/jlink`;
}

/**
 * The modules of the `jvm` image's JRE: what server applications commonly need (logging, JMX,
 * JNDI, HTTP client, XML, JDBC, Kerberos and SASL, scripting, instrumentation agents, TLS with EC
 * keys, `sun.misc.Unsafe`, zip file systems, Flight Recorder), without the desktop (AWT, Swing)
 * and the JDK's tools. An app needing another module uses its own runtime image.
 */
export const JVM_MODULES = [
  "java.base",
  "java.instrument",
  "java.logging",
  "java.management",
  "java.naming",
  "java.net.http",
  "java.prefs",
  "java.scripting",
  "java.security.jgss",
  "java.security.sasl",
  "java.sql",
  "java.xml",
  "jdk.crypto.ec",
  "jdk.jfr",
  "jdk.management",
  "jdk.unsupported",
  "jdk.zipfs",
] as const;

/**
 * jlink's options: no debug symbols, man pages or headers; modules stored uncompressed (a JVM
 * reads them faster; the layer is gzipped anyway) and a CDS archive of the default classes, so
 * the JVM starts as fast as the host's.
 */
export const JLINK_OPTIONS = [
  "--strip-debug",
  "--no-man-pages",
  "--no-header-files",
  "--compress=0",
  "--generate-cds-archive",
] as const;

/** The package of the emulators and the architectures the `emulators` image carries. */
export const QEMU_USER_PACKAGE = "qemu-user-static";
export const EMULATORS: Readonly<Record<string, string>> = {
  aarch64: "/usr/bin/qemu-aarch64-static",
  armv7l: "/usr/bin/qemu-arm-static",
  riscv64: "/usr/bin/qemu-riscv64-static",
};

/**
 * EVE's estimate of qemu's tax, `ceil(350 + 20 + 3·vcpus + 0.025·memoryMiB)`, as the `default`
 * image declares it.
 */
export const QEMU_TAX = { baseMiB: 370, perVcpuMiB: 3, perGuestMiB: 0.025 } as const;

/**
 * What emulating another architecture costs a task beyond its program: qemu-user's own code and
 * data plus its translation cache, measured for an idle busybox shell under qemu-aarch64 (see
 * test/bench/README.md, "runtimes"); a busy program's cache grows further, within its memory.
 */
export const EMULATION_TAX = { baseMiB: 32, perVcpuMiB: 0, perGuestMiB: 0 } as const;

/** Bumped when what a recipe makes changes without any input changing. */
const RECIPE_FORMAT = "1";

/** The image config a recipe makes (the OCI config's `config` part). */
export interface RecipeConfig {
  readonly Entrypoint?: string[];
  readonly Env: string[];
  readonly WorkingDir: string;
  readonly StopSignal?: string;
  readonly Labels: Record<string, string>;
}

/** What a recipe collected. */
export interface Collected {
  readonly entries: readonly RootfsEntry[];
  readonly config: RecipeConfig;
  readonly warnings: readonly string[];
  /** A line for the image's history. */
  readonly createdBy: string;
}

/** What a recipe's build may use. */
export interface CollectContext {
  readonly arch: HostArch;
  /** A directory the recipe may write to (a jlink output); removed after the build. */
  readonly workDir: string;
  readonly signal?: AbortSignal | undefined;
  /** For `default`: where qemu and its parts are (tests leave the modules out). */
  readonly qemu?: CollectOptions | undefined;
}

/** One built-in runtime image: its packages, its cache key and how its files are collected. */
export interface Recipe {
  readonly name: BuiltInRuntime;
  /** Debian packages it is made from, the first naming the tag; installed versions key the cache. */
  readonly packages: readonly string[];
  /** The tag's prefix, before the first package's version. */
  readonly tagPrefix: string;
  /** Inputs besides package versions: the loader's text, jlink's modules and options. */
  extraInputs(ctx: Pick<CollectContext, "qemu">): Promise<Record<string, string>>;
  collect(ctx: CollectContext, versions: Readonly<Record<string, string>>): Promise<Collected>;
}

/** The directory of the loader scripts shipped with this package. */
const LOADERS_DIR = path.resolve(import.meta.dirname, "..", "loaders");

/** The text of loader `name` (`loaders/<name>.sh`). */
export async function loaderText(name: string): Promise<string> {
  return readFile(path.join(LOADERS_DIR, `${name}.sh`), "utf8");
}

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/**
 * Adds the static busybox (as the loader's shell, at /eve/bin: the image's own /bin stays what
 * its packages made it) and `loader` at {@link LOADER_PATH}.
 */
async function addLoader(c: Collector, loader: string): Promise<void> {
  await c.addFileAs(await staticHostBusybox(), BUSYBOX_PATH);
  c.addSymlink("/eve/bin/sh", "busybox");
  c.addContent(LOADER_PATH, Buffer.from(loader), 0o755);
}

/** The host's busybox, resolved; it must be the static one (a loader has no libraries). */
async function staticHostBusybox(): Promise<string> {
  let real: string;
  try {
    real = await realpath(HOST_BUSYBOX);
  } catch (err) {
    throw new PackageNotInstalledError(BUSYBOX_PACKAGE, `${HOST_BUSYBOX} is missing`, err);
  }
  // A static executable has no interpreter: ldd says "not a dynamic executable".
  const ldd = await run("ldd", [real], { env: { ...process.env, LC_ALL: "C" } }).then(
    (r) => r.stdout,
    (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ""}${e.stderr ?? ""}`,
  );
  if (!/not a dynamic executable|statically linked/.test(ldd)) {
    throw new PackageNotInstalledError(
      BUSYBOX_PACKAGE,
      `${real} is dynamically linked (Debian's busybox package); a loader needs the static one`,
    );
  }
  return real;
}

/** The contract's labels, as a runtime image carries them. */
function contractLabels(o: {
  stop: "signal" | "qmp";
  tax?: object;
  devices?: readonly string[];
  emulators?: Readonly<Record<string, string>>;
}): Record<string, string> {
  const labels: Record<string, string> = {
    [RUNTIME_LABELS.runtime]: RUNTIME_CONTRACT_VERSION,
    [RUNTIME_LABELS.stop]: o.stop,
  };
  if (o.tax) labels[RUNTIME_LABELS.tax] = JSON.stringify(o.tax);
  if (o.devices) labels[RUNTIME_LABELS.devices] = JSON.stringify(o.devices);
  if (o.emulators) labels[RUNTIME_LABELS.emulators] = JSON.stringify(o.emulators);
  return labels;
}

const defaultRecipe: Recipe = {
  name: "default",
  packages: ["qemu-system-x86", BUSYBOX_PACKAGE],
  tagPrefix: "qemu",
  async extraInputs(ctx) {
    return {
      loader: sha256(await loaderText("default")),
      // A test image without qemu's modules must not share the cache with a whole one.
      modules: ctx.qemu?.moduleDir === null ? "left out" : "all",
    };
  },
  async collect(ctx, versions) {
    const qemu = await collectQemuRootfs(ctx.qemu ?? {});
    const c = new Collector();
    for (const e of qemu.entries) c.entries.set(e.path, e);
    await addLoader(c, await loaderText("default"));
    return {
      entries: c.sorted(),
      warnings: qemu.warnings,
      createdBy:
        `eve-tasks-tools-image: ${qemu.binary}, its libraries, modules and firmware from the Debian ` +
        `package ${qemu.packageName} ${qemu.qemuVersion}; busybox ${versions[BUSYBOX_PACKAGE]}; ${LOADER_PATH}`,
      config: {
        Entrypoint: [LOADER_PATH],
        Env: [`PATH=${IMAGE_PATH}`],
        WorkingDir: "/",
        Labels: {
          ...contractLabels({ stop: "qmp", tax: QEMU_TAX, devices: ["kvm", "tun"] }),
          [LABELS.hypervisor]: "qemu",
          [LABELS.qemuPackage]: qemu.packageName,
          [LABELS.qemuVersion]: qemu.qemuVersion,
        },
      },
    };
  },
};

/** Whether `file` starts with the ELF magic. */
async function isElf(file: string): Promise<boolean> {
  const fh = await open(file, "r");
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  } finally {
    await fh.close();
  }
}

const jvmRecipe: Recipe = {
  name: "jvm",
  packages: [JDK_PACKAGE, BUSYBOX_PACKAGE],
  tagPrefix: "jvm",
  async extraInputs() {
    return {
      loader: sha256(await loaderText("jvm")),
      modules: JVM_MODULES.join(","),
      jlink: JLINK_OPTIONS.join(" "),
    };
  },
  async collect(ctx, versions) {
    const jre = path.join(ctx.workDir, "jre");
    const jlink = jlinkPath(ctx.arch);
    await rm(jre, { recursive: true, force: true });
    try {
      await run(jlink, ["--add-modules", JVM_MODULES.join(","), ...JLINK_OPTIONS, "--output", jre], {
        signal: ctx.signal,
        maxBuffer: 4 << 20,
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.name === "AbortError") throw err;
      if (e.code === "ENOENT") throw new PackageNotInstalledError(JDK_PACKAGE, `${jlink} is missing`, err);
      throw new ToolsImageError("BUILD_FAILED", `jlink failed: ${(e.stderr ?? e.message).trim()}`, {
        context: { jlink },
        cause: err,
      });
    }
    const c = new Collector();
    const imageFiles = await c.addTreeAs(jre, JRE_DIR);
    const hostFiles = imageFiles.map((f) => path.join(jre, path.relative(JRE_DIR, f)));
    const elves: string[] = [];
    for (const f of hostFiles) if (await isElf(f)) elves.push(f);
    // Libraries found inside the JRE (its own, by $ORIGIN) are in the tree already; so is
    // libjvm.so, which the JRE's other libraries name without a path (the JVM has loaded it).
    const inTree = new Set(hostFiles.map((f) => path.basename(f)));
    const missing = (await c.addLibrariesOf(elves, { skipUnder: jre })).filter(
      (m, i, all) =>
        !inTree.has(m.library) &&
        all.findIndex((o) => o.library === m.library && o.neededBy === m.neededBy) === i,
    );
    const java = path.join(jre, "bin", "java");
    const javaMissing = missing.filter((m) => m.neededBy === java || m.neededBy.endsWith("/libjvm.so"));
    if (javaMissing.length > 0) {
      throw new ToolsImageError(
        "COLLECT_FAILED",
        `the JRE needs libraries ldd cannot find: ${javaMissing.map((m) => m.library).join(", ")}`,
        { context: { missing: javaMissing } },
      );
    }
    c.ensureDir("/tmp", 0o1777);
    await addLoader(c, await loaderText("jvm"));
    return {
      entries: c.sorted(),
      warnings: [...c.warnings, ...missing.map((m) => `${m.neededBy} needs ${m.library}, not found`)],
      createdBy:
        `eve-tasks-tools-image: a JRE made with jlink from ${JDK_PACKAGE} ${versions[JDK_PACKAGE]} ` +
        `(${JVM_MODULES.join(",")}), its libraries; busybox ${versions[BUSYBOX_PACKAGE]}; ${LOADER_PATH}`,
      config: {
        Entrypoint: [LOADER_PATH],
        Env: [`PATH=${JRE_DIR}/bin:${IMAGE_PATH}`, `JAVA_HOME=${JRE_DIR}`],
        WorkingDir: "/",
        StopSignal: "SIGTERM",
        Labels: {
          ...contractLabels({ stop: "signal" }),
          [LABELS.jvmModules]: JVM_MODULES.join(","),
        },
      },
    };
  },
};

const emulatorsRecipe: Recipe = {
  name: "emulators",
  packages: [QEMU_USER_PACKAGE],
  tagPrefix: "qemu-user",
  extraInputs() {
    return Promise.resolve({ emulators: JSON.stringify(EMULATORS), tax: JSON.stringify(EMULATION_TAX) });
  },
  async collect(_ctx, versions) {
    const c = new Collector();
    for (const file of Object.values(EMULATORS)) {
      if (!(await c.add(file, false))) {
        throw new PackageNotInstalledError(QEMU_USER_PACKAGE, `${file} is missing`);
      }
    }
    return {
      entries: c.sorted(),
      warnings: c.warnings,
      createdBy: `eve-tasks-tools-image: ${Object.values(EMULATORS).join(", ")} from ${QEMU_USER_PACKAGE} ${versions[QEMU_USER_PACKAGE]}`,
      config: {
        Env: [`PATH=${IMAGE_PATH}`],
        WorkingDir: "/",
        Labels: contractLabels({ stop: "signal", tax: EMULATION_TAX, emulators: EMULATORS }),
      },
    };
  },
};

/** The recipe of each built-in runtime. */
export const RECIPES: Readonly<Record<BuiltInRuntime, Recipe>> = {
  default: defaultRecipe,
  jvm: jvmRecipe,
  emulators: emulatorsRecipe,
};

/** The installed version of each of `recipe`'s packages. */
export async function recipeVersions(recipe: Recipe, qemu?: CollectOptions): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of recipe.packages) {
    const name = recipe.name === "default" && p === "qemu-system-x86" ? (qemu?.packageName ?? p) : p;
    out[name] = await debianPackageVersion(name);
  }
  return out;
}

/**
 * The cache key of an image: sha256 over the recipe, its format, the package versions and the
 * extra inputs (sorted JSON), as 64 hex digits.
 */
export function inputsDigest(
  recipe: Pick<Recipe, "name">,
  versions: Readonly<Record<string, string>>,
  extra: Readonly<Record<string, string>>,
  arch: HostArch = hostArch(),
): string {
  const sortObj = (o: Readonly<Record<string, string>>) =>
    Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
  return sha256(
    JSON.stringify({
      recipe: recipe.name,
      format: RECIPE_FORMAT,
      arch: arch.oci,
      packages: sortObj(versions),
      extra: sortObj(extra),
    }),
  );
}

/**
 * The tag of an image: `<prefix>-<first package's version>-<12 digits of the inputs digest>`, the
 * version without its epoch and every character outside the OCI tag grammar made `-`:
 * `qemu-7.2-dfsg-7-deb12u18-b3-0123456789ab`. At most 128 characters.
 */
export function runtimeImageTag(prefix: string, version: string, digest: string): string {
  const noEpoch = version.replace(/^\d+:/, "").replace(/[^A-Za-z0-9_.-]/g, "-");
  const suffix = `-${digest.slice(0, 12)}`;
  return `${prefix}-${noEpoch}`.slice(0, 128 - suffix.length) + suffix;
}
