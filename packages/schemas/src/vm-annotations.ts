/**
 * Annotations the spec-builder writes into a VM's spec (`virtualization: "HVM"`) and workers read
 * back: which hypervisor-tools image the task runs (pinned by digest), its vCPUs and the
 * accelerator asked for. Values of OCI annotations are strings.
 */
import { DigestSchema } from "./primitives.js";

/** The tools image of a VM task, pinned: `<tools image ref>@<manifest digest>` (see {@link formatPinnedRef}). */
export const TOOLS_ANNOTATION = "org.lfedge.eve-tasks.tools";
/** A VM's vCPUs, in decimal (`"2"`). */
export const VM_VCPUS_ANNOTATION = "org.lfedge.eve-tasks.vm.vcpus";
/** The accelerator a VM asked for: `auto`, `kvm` or `tcg`. */
export const VM_ACCEL_ANNOTATION = "org.lfedge.eve-tasks.vm.accel";

/** An image reference with the digest it was resolved to. */
export interface PinnedRef {
  /** The reference as configured, e.g. `registry.example/eve/tools:1` or `oci:/dir:tag`. */
  ref: string;
  /** The manifest digest, `<algorithm>:<encoded>`, e.g. `sha256:<64 hex>`. */
  digest: string;
  /** The digest's algorithm, e.g. `sha256`. */
  algorithm: string;
  /** The digest's encoded part (hex for sha256). */
  encoded: string;
}

/**
 * `<ref>@<digest>`: the value of {@link TOOLS_ANNOTATION} (and of the image annotation of a
 * native container). Throws a TypeError for an empty ref or a digest that is not
 * `<algorithm>:<encoded>`, so a malformed annotation is never written.
 */
export function formatPinnedRef(ref: string, digest: string): string {
  if (ref.length === 0 || /\s/.test(ref))
    throw new TypeError(`not an image reference: ${JSON.stringify(ref)}`);
  if (!DigestSchema.safeParse(digest).success) throw new TypeError(`not a digest: ${JSON.stringify(digest)}`);
  return `${ref}@${digest}`;
}

/**
 * Parses `<ref>@<digest>` at its last `@`, so a ref that is itself pinned (`app@sha256:…`) keeps
 * its own digest: `app@sha256:a@sha256:b` is ref `app@sha256:a`, digest `sha256:b`. Undefined when
 * the value has no `@`, an empty ref, whitespace, or no valid digest after the last `@`.
 */
export function parsePinnedRef(value: string): PinnedRef | undefined {
  const at = value.lastIndexOf("@");
  if (at <= 0 || /\s/.test(value)) return undefined;
  const ref = value.slice(0, at);
  const digest = value.slice(at + 1);
  if (!DigestSchema.safeParse(digest).success) return undefined;
  const colon = digest.indexOf(":");
  return { ref, digest, algorithm: digest.slice(0, colon), encoded: digest.slice(colon + 1) };
}

/** The vCPUs of {@link VM_VCPUS_ANNOTATION}: a decimal whole number ≥ 1, else undefined. */
export function parseVcpusAnnotation(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9][0-9]{0,5}$/.test(value)) return undefined;
  return Number(value);
}

/** What a VM's spec annotations say; each field is undefined when absent or malformed. */
export interface VmAnnotations {
  tools: PinnedRef | undefined;
  vcpus: number | undefined;
  accel: string | undefined;
}

/** Reads {@link TOOLS_ANNOTATION}, {@link VM_VCPUS_ANNOTATION} and {@link VM_ACCEL_ANNOTATION}. */
export function readVmAnnotations(annotations: Readonly<Record<string, string>> | undefined): VmAnnotations {
  const tools = annotations?.[TOOLS_ANNOTATION];
  const accel = annotations?.[VM_ACCEL_ANNOTATION];
  return {
    tools: tools === undefined ? undefined : parsePinnedRef(tools),
    vcpus: parseVcpusAnnotation(annotations?.[VM_VCPUS_ANNOTATION]),
    accel: accel === undefined || accel === "" ? undefined : accel,
  };
}
