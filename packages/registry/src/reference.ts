/**
 * Image references: `host[:port]/repo[:tag][@digest]` after the distribution reference grammar
 * (Docker Hub defaults: no host means `docker.io`, a one-component repo gets `library/`), and
 * local OCI layouts `oci:<dir>[:<tag>]`.
 */
import path from "node:path";
import { InvalidReferenceError } from "./errors.js";

/** Docker Hub's name in references, and the host its API is served from. */
export const DOCKER_HUB = "docker.io";
/** The API host of Docker Hub. */
export const DOCKER_HUB_API_HOST = "registry-1.docker.io";

/** A reference to an image in a registry. */
export interface RegistryReference {
  readonly kind: "registry";
  /** The reference as given. */
  readonly raw: string;
  /** `host[:port]` as written (`docker.io` for Docker Hub). */
  readonly host: string;
  /** The host to send API requests to (`registry-1.docker.io` for Docker Hub). */
  readonly apiHost: string;
  /** Repository path, e.g. `library/busybox`. */
  readonly repository: string;
  /** Tag; `latest` when neither tag nor digest is given; undefined with a digest only. */
  readonly tag: string | undefined;
  /** `sha256:<hex>` when the reference pins one. */
  readonly digest: string | undefined;
}

/** A reference to an image in a local OCI layout directory. */
export interface LayoutReference {
  readonly kind: "oci-layout";
  readonly raw: string;
  /** The layout directory, absolute. */
  readonly dir: string;
  /** The `org.opencontainers.image.ref.name` to pick; undefined: the layout's only manifest. */
  readonly tag: string | undefined;
}

/** Either kind of reference. */
export type ImageReference = RegistryReference | LayoutReference;

const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;

/** Parses `ref`; throws {@link InvalidReferenceError} saying what is wrong. */
export function parseReference(ref: string, cwd: string = process.cwd()): ImageReference {
  if (ref.length === 0) throw new InvalidReferenceError(ref, "empty");
  if (/\s/.test(ref)) throw new InvalidReferenceError(ref, "contains whitespace");
  if (ref.startsWith("oci:")) return parseLayout(ref, cwd);
  if (ref.length > 1024) throw new InvalidReferenceError(ref, "longer than 1024 characters");

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new InvalidReferenceError(ref, `"${digest}" is not a digest`);
    if (!SHA256.test(digest)) {
      throw new InvalidReferenceError(ref, `only sha256 digests (64 lowercase hex digits) are supported`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(ref, `"${tag}" is not a valid tag`);
  }
  if (rest.length === 0) throw new InvalidReferenceError(ref, "no repository");

  const parts = rest.split("/");
  let host = DOCKER_HUB;
  const first = parts[0] ?? "";
  if (parts.length > 1 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    host = first;
    parts.shift();
    if (!HOST.test(host)) throw new InvalidReferenceError(ref, `"${host}" is not a valid registry host`);
  }
  if (host === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  for (const p of parts) {
    if (p !== p.toLowerCase()) throw new InvalidReferenceError(ref, "repository name must be lowercase");
    if (!PATH_COMPONENT.test(p)) {
      throw new InvalidReferenceError(ref, `"${p}" is not a valid repository path component`);
    }
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  return {
    kind: "registry",
    raw: ref,
    host,
    apiHost: host === DOCKER_HUB ? DOCKER_HUB_API_HOST : host,
    repository: parts.join("/"),
    tag,
    digest,
  };
}

function parseLayout(ref: string, cwd: string): LayoutReference {
  const body = ref.slice("oci:".length);
  if (body.length === 0) throw new InvalidReferenceError(ref, "oci: needs a directory, as oci:<dir>:<tag>");
  let dir = body;
  let tag: string | undefined;
  const colon = body.lastIndexOf(":");
  if (colon >= 0) {
    const candidate = body.slice(colon + 1);
    if (!candidate.includes("/")) {
      dir = body.slice(0, colon);
      tag = candidate;
      if (tag.length === 0 || tag.includes("\0"))
        throw new InvalidReferenceError(ref, "empty tag after the directory");
    }
  }
  if (dir.length === 0) throw new InvalidReferenceError(ref, "oci: needs a directory, as oci:<dir>:<tag>");
  return { kind: "oci-layout", raw: ref, dir: path.resolve(cwd, dir), tag };
}

/** `host/repo[:tag][@digest]`, the canonical form of a registry reference. */
export function formatReference(ref: ImageReference): string {
  if (ref.kind === "oci-layout") return `oci:${ref.dir}${ref.tag === undefined ? "" : `:${ref.tag}`}`;
  return `${ref.host}/${ref.repository}${ref.tag === undefined ? "" : `:${ref.tag}`}${ref.digest === undefined ? "" : `@${ref.digest}`}`;
}

/** Whether `digest` is a sha256 digest this project can verify. */
export function isSha256Digest(digest: string): boolean {
  return SHA256.test(digest);
}
