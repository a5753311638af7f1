// The guest the VM tests and benchmarks boot: Debian's kernel and a busybox initramfs, made by
// examples/vm/make-guest.sh into a cache directory that outlives test runs and clones. The script
// serializes concurrent runs on the same directory with flock, so any number of test files (each
// its own process) may call ensureVmGuest at once; within one process the run is shared.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

/** The line the guest's /init prints on its console once it is up. */
export const VM_GUEST_MARKER = "EVE-TASKS-GUEST-UP";
/** The line the guest prints right before it powers off on the ACPI power button. */
export const VM_GUEST_POWERDOWN_MARKER = "EVE-TASKS-GUEST-POWERDOWN";
/** The kernel command line the guest is made for (serial console, reboot at once on panic). */
export const VM_GUEST_CMDLINE = "console=ttyS0 panic=-1 quiet";
/**
 * The smallest guest RAM to give this guest, in MiB. Debian's generic kernel does not boot in
 * 64 MiB under qemu (its decompressor resets the machine, over and over, without a word) and
 * runs out of memory in 80 MiB; 84 MiB boots. 96 leaves a margin.
 */
export const VM_GUEST_MIN_MEMORY_MIB = 96;
/** Where the guest is cached unless `EVE_TEST_VM_CACHE` names another directory. */
export const DEFAULT_VM_GUEST_CACHE = "/var/cache/eve-tasks/vm-guest";
/** The script that makes the guest. */
export const MAKE_GUEST_SCRIPT = resolve(import.meta.dirname, "..", "..", "examples", "vm", "make-guest.sh");

/** A guest ready to boot; copy or link its files under a node's EVE_VOLUME_ROOTS to use them. */
export interface VmGuest {
  /** The cache directory holding the files. */
  dir: string;
  /** Debian's kernel (bzImage). */
  kernelPath: string;
  /** The gzipped newc initramfs. */
  initrdPath: string;
  /** The command line to boot with ({@link VM_GUEST_CMDLINE}). */
  cmdline: string;
  /** Printed on the serial console, on a line of its own, once the guest is up. */
  marker: string;
  /** Printed on its own line right before the guest powers off on the ACPI power button. */
  powerdownMarker: string;
  /** True when the guest powers off on QMP `system_powerdown` (it loads the ACPI button driver). */
  powerdown: boolean;
  /** The Debian kernel package (`linux-image-6.1.0-NN-amd64`) and its version. */
  kernelPackage: string;
  kernelVersion: string;
}

/** Options of {@link ensureVmGuest}. */
export interface EnsureVmGuestOptions {
  /** The cache directory; default `EVE_TEST_VM_CACHE` or {@link DEFAULT_VM_GUEST_CACHE}. */
  dir?: string;
  /** Gets the script's output lines (what it downloaded, built or found cached). */
  log?: (line: string) => void;
}

/** The cache directory {@link ensureVmGuest} uses without a `dir` option. */
export function vmGuestCacheDir(): string {
  return resolve(process.env.EVE_TEST_VM_CACHE || DEFAULT_VM_GUEST_CACHE);
}

const runs = new Map<string, Promise<VmGuest>>();

/**
 * Makes the guest in the cache directory (downloading Debian's kernel only when the apt index
 * names a different one than the cached, rebuilding the initrd only when its inputs changed) and
 * returns its paths. Runs the script once per directory and process; a failed run is retried on
 * the next call.
 */
export function ensureVmGuest(options: EnsureVmGuestOptions = {}): Promise<VmGuest> {
  const dir = options.dir === undefined ? vmGuestCacheDir() : resolve(options.dir);
  let run = runs.get(dir);
  if (run === undefined) {
    run = makeGuest(dir, options.log);
    runs.set(dir, run);
    run.catch(() => runs.delete(dir));
  }
  return run;
}

async function makeGuest(dir: string, log: ((line: string) => void) | undefined): Promise<VmGuest> {
  const { stdout } = await new Promise<{ stdout: string; stderr: string }>((resolvePromise, reject) => {
    execFile(
      "bash",
      [MAKE_GUEST_SCRIPT, dir],
      // A kernel download and, with a stale index, an apt-get update; the lock may also be
      // held by another test file doing the same.
      { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        if (err) {
          const tail = `${stdout}${stderr}`.trim().split("\n").slice(-20).join("\n");
          reject(new Error(`${MAKE_GUEST_SCRIPT} ${dir} failed: ${err.message}\n${tail}`, { cause: err }));
        } else {
          resolvePromise({ stdout, stderr });
        }
      },
    );
  });
  if (log) for (const line of stdout.split("\n")) if (line !== "") log(line);
  const guest = parseGuestJson(await readFile(join(dir, "guest.json"), "utf8"), dir);
  if (guest.marker !== VM_GUEST_MARKER || guest.powerdownMarker !== VM_GUEST_POWERDOWN_MARKER) {
    throw new Error(
      `${join(dir, "guest.json")} names the markers ${guest.marker} and ${guest.powerdownMarker}; ` +
        `test/harness/vm-guest.ts expects ${VM_GUEST_MARKER} and ${VM_GUEST_POWERDOWN_MARKER}`,
    );
  }
  return guest;
}

function parseGuestJson(text: string, dir: string): VmGuest {
  const raw: unknown = JSON.parse(text);
  const obj = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const str = (key: string): string => {
    const v = obj[key];
    if (typeof v !== "string" || v === "") {
      throw new Error(`${join(dir, "guest.json")}: ${key} must be a non-empty string`);
    }
    return v;
  };
  return {
    dir,
    kernelPath: str("kernelPath"),
    initrdPath: str("initrdPath"),
    cmdline: str("cmdline"),
    marker: str("marker"),
    powerdownMarker: str("powerdownMarker"),
    powerdown: obj.powerdown === true,
    kernelPackage: str("kernelPackage"),
    kernelVersion: str("kernelVersion"),
  };
}
