/** Platform selection: which entry of an image index runs on a given architecture. */
import { PlatformNotFoundError } from "./errors.js";
import type { Descriptor, ImageIndex, Platform } from "./manifest.js";

/** OCI architecture (and variant) for each `uname -m` spelling. */
const OCI_ARCH: Readonly<Record<string, { architecture: string; variant?: string }>> = {
  x86_64: { architecture: "amd64" },
  amd64: { architecture: "amd64" },
  aarch64: { architecture: "arm64" },
  arm64: { architecture: "arm64" },
  armv7l: { architecture: "arm", variant: "v7" },
  armv6l: { architecture: "arm", variant: "v6" },
  riscv64: { architecture: "riscv64" },
  ppc64le: { architecture: "ppc64le" },
  s390x: { architecture: "s390x" },
  i686: { architecture: "386" },
  i386: { architecture: "386" },
};

/** The platform wanted for an app of architecture `arch` (`uname -m` or OCI spelling). */
export function platformFor(arch: string, os = "linux"): Platform {
  const p = OCI_ARCH[arch] ?? { architecture: arch };
  return p.variant === undefined ? { os, architecture: p.architecture } : { os, ...p };
}

/** The architecture of this machine in `uname -m` spelling (x86_64, aarch64, …). */
export function hostArch(): string {
  switch (process.arch) {
    case "x64":
      return "x86_64";
    case "arm64":
      return "aarch64";
    case "arm":
      return "armv7l";
    case "ia32":
      return "i686";
    default:
      return process.arch;
  }
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/** Whether an index entry is an attestation or has no usable platform. */
export function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.["vnd.docker.reference.type"] === "attestation-manifest" ||
    d.platform === undefined ||
    d.platform.os === "unknown" ||
    d.platform.architecture === "unknown"
  );
}

/** Default variant when an index entry gives none (arm64 is v8 unless said). */
function variantMatches(wanted: string | undefined, have: string | undefined, architecture: string): boolean {
  if (wanted === undefined) return true;
  if (have === undefined) return architecture === "arm64" ? wanted === "v8" : false;
  return wanted === have;
}

/**
 * The entry of `index` for `wanted`: same os and architecture, the variant when one is wanted;
 * attestations and unknown platforms are skipped. Throws {@link PlatformNotFoundError}
 * listing what the index has.
 */
export function selectPlatform(ref: string, index: ImageIndex, wanted: Platform): Descriptor {
  const candidates = index.manifests.filter((d) => !isAttestation(d));
  const match = candidates.find(
    (d) =>
      d.platform !== undefined &&
      d.platform.os === wanted.os &&
      d.platform.architecture === wanted.architecture &&
      variantMatches(wanted.variant, d.platform.variant, d.platform.architecture),
  );
  if (match) return match;
  throw new PlatformNotFoundError(
    ref,
    formatPlatform(wanted),
    candidates.flatMap((d) => (d.platform ? [formatPlatform(d.platform)] : [])),
  );
}
