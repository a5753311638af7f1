/**
 * The runtime-image contract: which labels of an image's OCI config make it a runtime image (a
 * HypervisorToolsConfig image whose Entrypoint + Cmd is a loader that execs the task's anchor),
 * what they mean, and the one reader of them that the spec-builder, the task-executor and the CLI
 * share. A seed carries an image's `org.lfedge.eve-tasks.*` labels and its StopSignal
 * ({@link SEED_LABEL_PREFIX}); nothing else of an image's labels reaches the bus.
 */
import { z } from "zod";
import { MAX_MEMORY_MIB } from "./app-instance-config.js";
import { ArchSchema } from "./app-instance-config.js";
import type { Arch } from "./app-instance-config.js";

/** The labels of a runtime image (values are strings; JSON where said). */
export const RUNTIME_LABELS = {
  /** `"1"`: the version of this contract the image speaks. */
  runtime: "org.lfedge.eve-tasks.runtime",
  /** `"signal"` (the image's StopSignal, default SIGTERM) or `"qmp"` (system_powerdown, then quit). */
  stop: "org.lfedge.eve-tasks.stop",
  /** JSON `{"baseMiB":…,"perVcpuMiB":…,"perGuestMiB":…}`: the anchor tax; absent = none. */
  tax: "org.lfedge.eve-tasks.tax",
  /** JSON list of the devices the runtime may be given, e.g. `["kvm","tun"]`; absent = none. */
  devices: "org.lfedge.eve-tasks.devices",
  /**
   * JSON `{"<arch>":"<absolute path in the image>",…}`: user-mode emulators for native apps of
   * another architecture (the `emulators` runtime); the node registers them with binfmt_misc.
   */
  emulators: "org.lfedge.eve-tasks.emulators",
} as const;

/** The runtime whose emulators run native apps of another architecture. */
export const EMULATORS_RUNTIME = "emulators";

/** The version of the runtime-image contract this project speaks. */
export const RUNTIME_CONTRACT_VERSION = "1";

/** Labels with this prefix (and only those) travel in a seed. */
export const SEED_LABEL_PREFIX = "org.lfedge.eve-tasks.";
/** At most this many labels travel in a seed. */
export const MAX_SEED_LABELS = 32;
/** A label value longer than this is cut from a seed (a runtime label is never that long). */
export const MAX_SEED_LABEL_CHARS = 4096;

/**
 * The labels of an image config a seed keeps: those starting with {@link SEED_LABEL_PREFIX} whose
 * value is at most {@link MAX_SEED_LABEL_CHARS} long (a longer one is left out, so reading it
 * later says it is missing rather than misreading a cut value), the contract's own first, then
 * the others in order, at most {@link MAX_SEED_LABELS} in all. Bounded so an image cannot make its
 * seed too large for the bus.
 */
export function seedLabelsOf(
  labels: Readonly<Record<string, string>> | null | undefined,
): Record<string, string> {
  const contract: readonly string[] = Object.values(RUNTIME_LABELS);
  const fits = (k: string): boolean => {
    const v = labels?.[k];
    return (
      k.startsWith(SEED_LABEL_PREFIX) &&
      k.length <= 256 &&
      typeof v === "string" &&
      v.length <= MAX_SEED_LABEL_CHARS
    );
  };
  const keys = Object.keys(labels ?? {}).filter(fits);
  const ordered = [
    ...contract.filter((k) => keys.includes(k)),
    ...keys.filter((k) => !contract.includes(k)).sort(),
  ];
  const out: Record<string, string> = {};
  for (const k of ordered.slice(0, MAX_SEED_LABELS)) out[k] = labels?.[k] as string;
  return out;
}

/** Devices a runtime may declare, and a node may grant. */
export const RUNTIME_DEVICES = ["kvm", "tun"] as const;
/** A device a runtime may be given: `kvm` (/dev/kvm) or `tun` (/dev/net/tun). */
export const RuntimeDeviceSchema = z.enum(RUNTIME_DEVICES, {
  error: () => `must be one of ${RUNTIME_DEVICES.join(", ")}`,
});
/** A runtime device. */
export type RuntimeDevice = z.infer<typeof RuntimeDeviceSchema>;

/** How a runtime's anchor is stopped. */
export const STOP_METHODS = ["signal", "qmp"] as const;
/** A stop method. */
export type StopMethod = (typeof STOP_METHODS)[number];

/** A runtime's stop: its StopSignal, or QMP on `EVE_TASK_QMP_SOCKET`. */
export const RuntimeStopSchema = z.discriminatedUnion("method", [
  z.object({
    method: z.literal("signal"),
    signal: z.string().regex(/^SIG[A-Z0-9]+$/, { error: "must be a signal name such as SIGTERM" }),
  }),
  z.object({ method: z.literal("qmp") }),
]);
/** A runtime's stop. */
export type RuntimeStop = z.infer<typeof RuntimeStopSchema>;

const taxPart = (what: string, max: number) =>
  z
    .number({ error: `${what} must be a number of MiB` })
    .min(0, { error: `${what} must not be negative` })
    .max(max, { error: `${what} must be at most ${max}` })
    .default(0);

/**
 * The anchor tax an image declares, in MiB: `baseMiB + perVcpuMiB·vcpus + perGuestMiB·memoryMiB`
 * (EVE's estimate for qemu is 370, 3, 0.025). Each part defaults to 0.
 */
export const RuntimeTaxSchema = z.strictObject(
  {
    baseMiB: taxPart("baseMiB", MAX_MEMORY_MIB),
    perVcpuMiB: taxPart("perVcpuMiB", 65536),
    perGuestMiB: taxPart("perGuestMiB", 16),
  },
  { error: 'must be a JSON object {"baseMiB":…,"perVcpuMiB":…,"perGuestMiB":…}' },
);
/** An image's declared tax. */
export type RuntimeTax = z.infer<typeof RuntimeTaxSchema>;

/** No tax. */
export const NO_TAX: RuntimeTax = Object.freeze({ baseMiB: 0, perVcpuMiB: 0, perGuestMiB: 0 });

/**
 * The tax in whole MiB for a task of `memoryMiB` and `vcpus`: the declared sum rounded up (after
 * rounding to 1e-6 MiB, so 0.025·40 stays 1 and is not made 2 by a floating-point error).
 */
export function runtimeTaxMiB(tax: RuntimeTax, task: { memoryMiB: number; vcpus: number }): number {
  const sum = tax.baseMiB + tax.perVcpuMiB * task.vcpus + tax.perGuestMiB * task.memoryMiB;
  return Math.ceil(Math.round(sum * 1e6) / 1e6);
}

/**
 * An emulators label: architecture (`uname -m` spelling) → path in the image. Architectures an
 * app cannot name are ignored when read, so an image may carry more.
 */
export const EmulatorsSchema = z.record(
  z.string().regex(/^[a-z0-9_]{1,32}$/, { error: "must be an architecture such as aarch64" }),
  z
    .string()
    .regex(/^\/[^\0\s,:]*$/, { error: "must be an absolute path in the image (no spaces, ',' or ':')" }),
  { error: 'must be a JSON object {"<arch>":"/path/in/image",…}' },
);

/** What a runtime image's labels say, read and checked. */
export interface RuntimeImageFacts {
  /** Always {@link RUNTIME_CONTRACT_VERSION}. */
  readonly contract: string;
  readonly stop: RuntimeStop;
  readonly tax: RuntimeTax;
  /** Whether the image declared a tax label at all. */
  readonly taxDeclared: boolean;
  readonly devices: readonly RuntimeDevice[];
  /** Emulators by architecture, paths inside the image; empty when the image has none. */
  readonly emulators: Readonly<Partial<Record<Arch, string>>>;
}

/** Why an image's labels cannot be used. */
export interface RuntimeLabelProblem {
  /** True when the image is not a runtime image at all (no runtime label). */
  readonly notRuntime: boolean;
  readonly message: string;
}

/** Signal numbers an image's StopSignal may be written as. */
const SIGNAL_NUMBERS: Readonly<Record<string, string>> = {
  "1": "SIGHUP",
  "2": "SIGINT",
  "3": "SIGQUIT",
  "9": "SIGKILL",
  "10": "SIGUSR1",
  "12": "SIGUSR2",
  "15": "SIGTERM",
};

/**
 * An image's StopSignal as a signal name: `SIGTERM`, `TERM`, `15` → `SIGTERM`; absent or empty →
 * `SIGTERM`; undefined for anything that is not a signal.
 */
export function normalizeStopSignal(stopSignal: string | null | undefined): string | undefined {
  const s = (stopSignal ?? "").trim().toUpperCase();
  if (s === "") return "SIGTERM";
  if (/^[0-9]+$/.test(s)) return SIGNAL_NUMBERS[String(Number(s))];
  const name = s.startsWith("SIG") ? s : `SIG${s}`;
  return /^SIG[A-Z][A-Z0-9]{1,10}$/.test(name) ? name : undefined;
}

function parseJsonLabel(
  label: string,
  text: string,
): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, message: `label ${label} is not JSON: ${JSON.stringify(text.slice(0, 80))}` };
  }
}

function firstIssue(label: string, error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  return `label ${label}: ${where}${issue?.message ?? "invalid"}`;
}

/**
 * Reads a runtime image's labels (as a seed carries them) and its StopSignal. A problem says
 * whether the image is no runtime image at all (no {@link RUNTIME_LABELS.runtime} label) or a
 * runtime image with a label this node cannot use (another contract version, an unknown stop
 * method or device, a tax that is not the JSON the contract says).
 */
export function readRuntimeLabels(
  labels: Readonly<Record<string, string>> | null | undefined,
  stopSignal: string | null | undefined,
): { ok: true; facts: RuntimeImageFacts } | ({ ok: false } & RuntimeLabelProblem) {
  const l = labels ?? {};
  const contract = l[RUNTIME_LABELS.runtime];
  if (contract === undefined) {
    return {
      ok: false,
      notRuntime: true,
      message: `it has no label ${RUNTIME_LABELS.runtime}, so it is not a runtime image`,
    };
  }
  const bad = (message: string) => ({ ok: false as const, notRuntime: false, message });
  if (contract !== RUNTIME_CONTRACT_VERSION) {
    return bad(
      `label ${RUNTIME_LABELS.runtime} is ${JSON.stringify(contract)}: this node speaks runtime contract ${JSON.stringify(RUNTIME_CONTRACT_VERSION)}`,
    );
  }

  const stopText = l[RUNTIME_LABELS.stop] ?? "signal";
  let stop: RuntimeStop;
  if (stopText === "qmp") stop = { method: "qmp" };
  else if (stopText === "signal") {
    const signal = normalizeStopSignal(stopSignal);
    if (signal === undefined) return bad(`its StopSignal ${JSON.stringify(stopSignal)} is not a signal`);
    stop = { method: "signal", signal };
  } else {
    return bad(
      `label ${RUNTIME_LABELS.stop} is ${JSON.stringify(stopText)}: the stop methods a node knows are ${STOP_METHODS.map((m) => JSON.stringify(m)).join(" and ")}`,
    );
  }

  let tax: RuntimeTax = NO_TAX;
  const taxText = l[RUNTIME_LABELS.tax];
  if (taxText !== undefined) {
    const json = parseJsonLabel(RUNTIME_LABELS.tax, taxText);
    if (!json.ok) return bad(json.message);
    const r = RuntimeTaxSchema.safeParse(json.value);
    if (!r.success) return bad(firstIssue(RUNTIME_LABELS.tax, r.error));
    tax = r.data;
  }

  let devices: RuntimeDevice[] = [];
  const devicesText = l[RUNTIME_LABELS.devices];
  if (devicesText !== undefined) {
    const json = parseJsonLabel(RUNTIME_LABELS.devices, devicesText);
    if (!json.ok) return bad(json.message);
    if (!Array.isArray(json.value)) {
      return bad(`label ${RUNTIME_LABELS.devices} must be a JSON list such as ["kvm","tun"]`);
    }
    for (const d of json.value as unknown[]) {
      const r = RuntimeDeviceSchema.safeParse(d);
      if (!r.success) {
        return bad(
          `label ${RUNTIME_LABELS.devices} names device ${JSON.stringify(d)}: a runtime may be given only ${RUNTIME_DEVICES.join(" and ")}`,
        );
      }
      if (!devices.includes(r.data)) devices.push(r.data);
    }
    devices = devices.sort();
  }

  const emulators: Partial<Record<Arch, string>> = {};
  const emulatorsText = l[RUNTIME_LABELS.emulators];
  if (emulatorsText !== undefined) {
    const json = parseJsonLabel(RUNTIME_LABELS.emulators, emulatorsText);
    if (!json.ok) return bad(json.message);
    const r = EmulatorsSchema.safeParse(json.value);
    if (!r.success) return bad(firstIssue(RUNTIME_LABELS.emulators, r.error));
    for (const [arch, path] of Object.entries(r.data)) {
      const a = ArchSchema.safeParse(arch);
      if (a.success) emulators[a.data] = path;
    }
  }

  return {
    ok: true,
    facts: { contract, stop, tax, taxDeclared: taxText !== undefined, devices, emulators },
  };
}
