import { connect } from "node:net";
import type { NetConnectOpts } from "node:net";

/** Unix socket paths are capped at 108 bytes including the terminating NUL (sun_path). */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/**
 * Resolves true if a stream connection to the target can be opened within `timeoutMs`
 * (then closes it at once), false otherwise. Never rejects.
 */
export function canConnect(
  target: { path: string } | { host: string; port: number },
  timeoutMs = 1_000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const opts: NetConnectOpts =
      "path" in target ? { path: target.path } : { host: target.host, port: target.port };
    const socket = connect(opts);
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => undefined);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** The byte length of a unix socket path, as the kernel counts it (without the NUL). */
export function socketPathBytes(path: string): number {
  return Buffer.byteLength(path, "utf8");
}
