/**
 * Registry credentials and authentication: docker `config.json` credentials (EVE_REGISTRY_AUTH_FILE),
 * `WWW-Authenticate` challenge parsing, and bearer tokens from a token endpoint, cached per scope.
 */
import { readFile } from "node:fs/promises";
import { AuthFileError } from "./errors.js";

/** A user name and password for one registry host. */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Looks credentials up by registry host (`host[:port]`). */
export type CredentialStore = (host: string) => Credentials | undefined;

/** No credentials for anyone (anonymous pulls). */
export const anonymous: CredentialStore = () => undefined;

const DOCKER_HUB_ALIASES = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/** `https://index.docker.io/v1/` → `index.docker.io`; `host:5000` stays. */
function hostOfKey(key: string): string {
  return key
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .toLowerCase();
}

/**
 * Parses a docker `config.json` (`{ "auths": { "<host>": { "auth": base64("user:pass") } } }`,
 * or `username` and `password` instead of `auth`). Keys may be URLs. Docker Hub's aliases
 * (`docker.io`, `index.docker.io`, `registry-1.docker.io`) share credentials.
 */
export function parseAuthConfig(text: string, file = "(inline)"): CredentialStore {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AuthFileError(file, `not JSON: ${(err as Error).message}`);
  }
  const auths = (json as { auths?: unknown } | null)?.auths;
  if (auths === undefined) return anonymous;
  if (typeof auths !== "object" || auths === null) throw new AuthFileError(file, '"auths" must be an object');
  const byHost = new Map<string, Credentials>();
  for (const [key, entry] of Object.entries(auths as Record<string, unknown>)) {
    if (typeof entry !== "object" || entry === null) continue;
    const e = entry as { auth?: unknown; username?: unknown; password?: unknown };
    let creds: Credentials | undefined;
    if (typeof e.auth === "string" && e.auth.length > 0) {
      const decoded = Buffer.from(e.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon < 0) throw new AuthFileError(file, `auths["${key}"].auth is not base64 of "user:password"`);
      creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else if (typeof e.username === "string" && typeof e.password === "string") {
      creds = { username: e.username, password: e.password };
    }
    if (creds === undefined) continue;
    const host = hostOfKey(key);
    byHost.set(host, creds);
  }
  return (host) => {
    const h = host.toLowerCase();
    const direct = byHost.get(h);
    if (direct) return direct;
    if (DOCKER_HUB_ALIASES.includes(h)) {
      for (const alias of DOCKER_HUB_ALIASES) {
        const c = byHost.get(alias);
        if (c) return c;
      }
    }
    return undefined;
  };
}

/** Reads credentials from a docker `config.json` file; undefined `file` means anonymous. */
export async function loadCredentials(file: string | undefined): Promise<CredentialStore> {
  if (file === undefined || file === "") return anonymous;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new AuthFileError(file, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
  return parseAuthConfig(text, file);
}

/** One challenge of a `WWW-Authenticate` header. */
export interface Challenge {
  /** Lowercase scheme: `bearer`, `basic`. */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Parses `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (several challenges allowed). */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  const re =
    /\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)((?:\s*[A-Za-z0-9_.-]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?)*)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(header)) !== null) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    const params: Record<string, string> = {};
    const pre = /([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
    let p: RegExpExecArray | null;
    while ((p = pre.exec(m[2] ?? "")) !== null) {
      params[(p[1] ?? "").toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
    }
    out.push({ scheme: (m[1] ?? "").toLowerCase(), params });
  }
  return out;
}

/** `Basic base64(user:password)`. */
export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, "utf8").toString("base64")}`;
}
