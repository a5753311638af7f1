/**
 * An OCI distribution client for one registry repository: manifests by tag or digest, blobs as
 * streams; anonymous, basic and bearer-token auth; plain HTTP only for insecure hosts; blob
 * redirects followed without sending credentials to another origin.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { anonymous, basicAuthorization, parseChallenges } from "./auth.js";
import type { Challenge, CredentialStore, Credentials } from "./auth.js";
import {
  DigestMismatchError,
  InvalidManifestError,
  NotFoundError,
  RegistryError,
  RegistryHttpError,
  TooLargeError,
  UnauthorizedError,
} from "./errors.js";
import { discard, httpGet, readBody } from "./http.js";
import { DEFAULT_LIMITS, LIMIT_SETTINGS } from "./limits.js";
import type { PullLimits } from "./limits.js";
import { MANIFEST_ACCEPT } from "./manifest.js";
import type { Descriptor } from "./manifest.js";
import type { RegistryReference } from "./reference.js";
import { isSha256Digest } from "./reference.js";

/** Manifest bytes as received, with their digest. */
export interface FetchedManifest {
  /** The exact bytes (never re-serialized). */
  readonly bytes: Buffer;
  /** Content-Type of the response (or the layout's descriptor media type). */
  readonly contentType: string | undefined;
  /** `sha256:` of the bytes. */
  readonly digest: string;
}

/** Where an image's manifests and blobs come from: a registry repository or a local OCI layout. */
export interface ImageSource {
  /** For messages: `127.0.0.1:5000/app` or `oci:/dir`. */
  readonly name: string;
  /** The manifest (or index) named by a tag or digest; `undefined`: the source's default. */
  getManifest(reference: string | undefined): Promise<FetchedManifest>;
  /** A blob's bytes as a stream (not yet verified: the content store checks them). */
  openBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<Readable>;
}

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** Credentials by host (default: none). */
  credentials?: CredentialStore;
  /** `host:port`s reached over plain HTTP (EVE_INSECURE_REGISTRIES); every other host over HTTPS. */
  insecureHosts?: readonly string[];
  limits?: PullLimits;
  /** Idle socket timeout, ms (default 30 000). */
  timeoutMs?: number;
  userAgent?: string;
}

const MAX_REDIRECTS = 5;

interface CachedToken {
  readonly authorization: string;
  readonly expiresAtMs: number;
}

/** The sha256 digest of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

async function errorDetail(res: IncomingMessage): Promise<string> {
  try {
    const body = await readBody(res, 8192, () => new Error("long"));
    const text = body.toString("utf8");
    try {
      const j = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      if (Array.isArray(j.errors) && j.errors.length > 0) {
        return j.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
      }
    } catch {
      // not JSON
    }
    return text.trim().slice(0, 200);
  } catch {
    return "";
  }
}

/**
 * Throws when a 401 came from `answered`, another origin than the registry's `asked`: a host the
 * registry redirected to asks for credentials. They are the registry's, and go neither to that
 * host nor to a token endpoint it names.
 */
function refuseForeignChallenge(asked: URL, answered: URL): void {
  if (answered.origin === asked.origin) return;
  throw new UnauthorizedError(
    answered.origin + answered.pathname,
    401,
    `${answered.origin}, where ${asked.origin} redirected, asks for credentials; ` +
      `they are sent only to ${asked.origin} and the token endpoint it names`,
  );
}

/** A client of one registry host, shared by every repository on it (tokens are cached per scope). */
export class RegistryClient {
  readonly #credentials: CredentialStore;
  readonly #insecure: ReadonlySet<string>;
  readonly #limits: PullLimits;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #tokens = new Map<string, CachedToken>();

  constructor(options: RegistryClientOptions = {}) {
    this.#credentials = options.credentials ?? anonymous;
    this.#insecure = new Set((options.insecureHosts ?? []).map((h) => h.toLowerCase()));
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#userAgent = options.userAgent ?? "eve-tasks-registry/0.1";
  }

  /** `http` for hosts in the insecure list, else `https`. */
  schemeOf(host: string): "http" | "https" {
    return this.#insecure.has(host.toLowerCase()) ? "http" : "https";
  }

  /** An {@link ImageSource} over the repository of `ref`. */
  source(ref: RegistryReference): ImageSource {
    return {
      name: `${ref.host}/${ref.repository}`,
      getManifest: (reference) => this.getManifest(ref, reference ?? ref.digest ?? ref.tag ?? "latest"),
      openBlob: (d, signal) => this.openBlob(ref, d, signal),
    };
  }

  #baseUrl(ref: RegistryReference): string {
    return `${this.schemeOf(ref.apiHost)}://${ref.apiHost}/v2/${ref.repository}`;
  }

  /**
   * GETs the manifest `reference` (tag or digest) of `ref`'s repository, capped at
   * maxManifestBytes; a digest reference is verified against the bytes.
   */
  async getManifest(ref: RegistryReference, reference: string): Promise<FetchedManifest> {
    const url = new URL(`${this.#baseUrl(ref)}/manifests/${reference}`);
    const what = `manifest ${ref.host}/${ref.repository}:${reference}`.replace(/:sha256:/, "@sha256:");
    const res = await this.#authorizedGet(ref, url, { Accept: MANIFEST_ACCEPT });
    await this.#expectOk(res, what, url);
    const max = this.#limits.maxManifestBytes;
    const tooLarge = (n: number): Error => new TooLargeError(what, n, max, LIMIT_SETTINGS.maxManifestBytes);
    const declared = Number(res.headers["content-length"]);
    if (Number.isFinite(declared) && declared > max) {
      discard(res);
      throw tooLarge(declared);
    }
    const bytes = await readBody(res, max, tooLarge);
    const digest = sha256Digest(bytes);
    if (isSha256Digest(reference) && digest !== reference)
      throw new DigestMismatchError(what, reference, digest);
    if (bytes.length === 0) throw new InvalidManifestError("manifest", `${what} is empty`);
    return { bytes, contentType: res.headers["content-type"], digest };
  }

  /** GETs blob `d` of `ref`'s repository as a stream, following storage redirects. */
  async openBlob(ref: RegistryReference, d: Descriptor, signal?: AbortSignal): Promise<Readable> {
    const url = new URL(`${this.#baseUrl(ref)}/blobs/${d.digest}`);
    const what = `blob ${d.digest} of ${ref.host}/${ref.repository}`;
    const res = await this.#authorizedGet(ref, url, {}, signal);
    await this.#expectOk(res, what, url);
    return res;
  }

  async #expectOk(res: IncomingMessage, what: string, url: URL): Promise<void> {
    const status = res.statusCode ?? 0;
    if (status === 200) return;
    const detail = await errorDetail(res);
    if (status === 404) throw new NotFoundError(what + (detail ? ` (${detail})` : ""), url.href);
    if (status === 401 || status === 403)
      throw new UnauthorizedError(url.href, status, detail || "access denied");
    throw new RegistryHttpError(url.href, status, detail);
  }

  /**
   * GET with the cached authorization for the repository; on 401, answers the challenge (basic
   * or bearer) and tries once more. Redirects are followed; credentials go only to the
   * registry's own origin, and only a challenge from that origin is answered (a host it
   * redirected to could otherwise name its own token endpoint and receive them).
   */
  async #authorizedGet(
    ref: RegistryReference,
    url: URL,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<IncomingMessage> {
    const scope = `repository:${ref.repository}:pull`;
    const cacheKey = `${ref.apiHost}|${scope}`;
    const cached = this.#tokens.get(cacheKey);
    const authorization = cached && cached.expiresAtMs > Date.now() ? cached.authorization : undefined;
    const first = await this.#follow(url, headers, authorization, signal);
    const res = first.res;
    if (res.statusCode !== 401) return res;
    const detail = await errorDetail(res);
    refuseForeignChallenge(url, first.url);
    const header = res.headers["www-authenticate"];
    const challenges = parseChallenges(Array.isArray(header) ? header.join(", ") : (header ?? ""));
    const creds =
      this.#credentials(ref.host) ?? (ref.host !== ref.apiHost ? this.#credentials(ref.apiHost) : undefined);
    const fresh = await this.#answer(ref, challenges, scope, creds, url, detail);
    this.#tokens.set(cacheKey, fresh);
    const again = await this.#follow(url, headers, fresh.authorization, signal);
    if (again.res.statusCode === 401) {
      discard(again.res);
      refuseForeignChallenge(url, again.url);
    }
    return again.res;
  }

  async #answer(
    ref: RegistryReference,
    challenges: readonly Challenge[],
    scope: string,
    creds: Credentials | undefined,
    url: URL,
    detail: string,
  ): Promise<CachedToken> {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer) return this.#token(ref, bearer, scope, creds);
    if (challenges.some((c) => c.scheme === "basic")) {
      if (!creds) {
        throw new UnauthorizedError(
          url.href,
          401,
          `the registry needs a user name and password, and EVE_REGISTRY_AUTH_FILE has none for ${ref.host}`,
        );
      }
      return { authorization: basicAuthorization(creds), expiresAtMs: Number.MAX_SAFE_INTEGER };
    }
    throw new UnauthorizedError(url.href, 401, detail || "no supported authentication challenge");
  }

  /** The bearer token flow: GET realm?service=…&scope=… (with basic credentials if any). */
  async #token(
    ref: RegistryReference,
    challenge: Challenge,
    scope: string,
    creds: Credentials | undefined,
  ): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (!realm) throw new UnauthorizedError(ref.host, 401, "bearer challenge without a realm");
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new UnauthorizedError(ref.host, 401, `bearer challenge realm "${realm}" is not a URL`);
    }
    if (url.protocol === "http:" && !this.#insecure.has(url.host.toLowerCase())) {
      throw new UnauthorizedError(
        ref.host,
        401,
        `token endpoint ${realm} is plain HTTP and ${url.host} is not in EVE_INSECURE_REGISTRIES`,
      );
    }
    if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
    url.searchParams.set("scope", challenge.params.scope ?? scope);
    const headers: Record<string, string> = { "User-Agent": this.#userAgent };
    if (creds) headers.Authorization = basicAuthorization(creds);
    const started = Date.now();
    const res = await httpGet(url, { headers, timeoutMs: this.#timeoutMs });
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      const detail = await errorDetail(res);
      if (status === 401 || status === 403) {
        throw new UnauthorizedError(
          url.origin + url.pathname,
          status,
          `token endpoint refused ${creds ? `user "${creds.username}"` : "anonymous access"}${detail ? `: ${detail}` : ""}`,
        );
      }
      throw new RegistryHttpError(url.origin + url.pathname, status, detail);
    }
    const body = await readBody(res, 1 << 20, () => new RegistryError("HTTP", "token response over 1 MiB"));
    let json: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      json = JSON.parse(body.toString("utf8")) as typeof json;
    } catch {
      throw new UnauthorizedError(url.origin + url.pathname, 200, "token endpoint answered with no JSON");
    }
    const token = typeof json.token === "string" ? json.token : json.access_token;
    if (typeof token !== "string" || token.length === 0) {
      throw new UnauthorizedError(url.origin + url.pathname, 200, "token endpoint answered without a token");
    }
    const expiresInS = typeof json.expires_in === "number" && json.expires_in > 0 ? json.expires_in : 60;
    return { authorization: `Bearer ${token}`, expiresAtMs: started + Math.max(1, expiresInS - 10) * 1000 };
  }

  /**
   * GET `url`, following up to 5 redirects; Authorization only to the first URL's origin.
   * Resolves with the last response and the URL that gave it.
   */
  async #follow(
    first: URL,
    headers: Record<string, string>,
    authorization: string | undefined,
    signal?: AbortSignal,
  ): Promise<{ res: IncomingMessage; url: URL }> {
    let url = first;
    for (let hop = 0; ; hop++) {
      const h: Record<string, string> = { "User-Agent": this.#userAgent, ...headers };
      if (authorization !== undefined && url.origin === first.origin) h.Authorization = authorization;
      const res = await httpGet(url, { headers: h, timeoutMs: this.#timeoutMs, signal });
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return { res, url };
      discard(res);
      if (hop >= MAX_REDIRECTS)
        throw new RegistryHttpError(first.href, status, `more than ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, url);
      if (
        next.protocol === "http:" &&
        url.protocol === "https:" &&
        !this.#insecure.has(next.host.toLowerCase())
      ) {
        throw new RegistryHttpError(
          first.href,
          status,
          `refusing a redirect from HTTPS to plain HTTP (${next.origin})`,
        );
      }
      if (next.protocol !== "http:" && next.protocol !== "https:") {
        throw new RegistryHttpError(first.href, status, `refusing a redirect to ${next.protocol}`);
      }
      url = next;
    }
  }
}
