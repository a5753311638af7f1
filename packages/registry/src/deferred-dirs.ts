/**
 * Directory metadata a layer sets, applied once the layer's entries are all written (a child
 * written later would change a directory's mtime, and a read-only mode would stop the writes).
 *
 * Memory stays bounded: records are binary, kept in memory up to 1 MiB and appended to a scratch
 * file beyond that. Applying them never follows a symlink: each directory is reached from the
 * root one component at a time with `O_NOFOLLOW|O_DIRECTORY` (see `beneath.ts`) and changed
 * through its fd (fchown, fchmod, futimes), so a path the layer later turned into a symlink
 * changes nothing outside the root. A record is dropped when its directory, or an ancestor, was
 * replaced later in the layer: each record holds the inode it was made for, and a replaced
 * directory is moved to a trash dir (not deleted) until the records are applied, so its inode
 * cannot be reused and a new directory at the same path never matches an old record.
 */
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  futimesSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from "node:fs";
import { constants } from "node:fs";
import { DIR_FLAGS, openDirAt } from "./beneath.js";

/** The metadata of one directory entry. */
export interface DirMeta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeMs: number;
}

/** A directory to give `meta`: its path below the root (`""`: the root) and the inode it had. */
export interface DirRecord extends DirMeta {
  readonly rel: string;
  readonly dev: bigint;
  readonly ino: bigint;
}

/** What applying the records did. */
export interface ApplyDirsResult {
  applied: number;
  /** Records whose directory was replaced (or removed) later in the layer. */
  dropped: number;
}

const FIXED = 4 + 8 + 4 + 4 + 4 + 8 + 8;
const SPILL_BYTES = 1 << 20;
/** Open fds kept while walking (a deeper tree reopens ancestors as needed). */
const MAX_OPEN = 128;
const GONE = new Set(["ENOENT", "ENOTDIR", "ELOOP"]);

function encode(r: DirRecord): Buffer {
  const rel = Buffer.from(r.rel, "utf8");
  const b = Buffer.allocUnsafe(FIXED + rel.length);
  b.writeUInt32LE(FIXED + rel.length, 0);
  b.writeDoubleLE(r.mtimeMs, 4);
  b.writeUInt32LE(r.mode, 12);
  b.writeUInt32LE(r.uid, 16);
  b.writeUInt32LE(r.gid, 20);
  b.writeBigUInt64LE(r.dev, 24);
  b.writeBigUInt64LE(r.ino, 32);
  rel.copy(b, FIXED);
  return b;
}

function decode(b: Buffer, at: number, len: number): DirRecord {
  return {
    mtimeMs: b.readDoubleLE(at + 4),
    mode: b.readUInt32LE(at + 12),
    uid: b.readUInt32LE(at + 16),
    gid: b.readUInt32LE(at + 20),
    dev: b.readBigUInt64LE(at + 24),
    ino: b.readBigUInt64LE(at + 32),
    rel: b.toString("utf8", at + FIXED, at + len),
  };
}

/** One directory on the walk's stack. */
interface Level {
  readonly name: string;
  fd: number;
  readonly dev: bigint;
  readonly ino: bigint;
  pending: DirMeta | undefined;
}

/** The records of one layer, in tar order. */
export class DeferredDirs {
  readonly #spillPath: string;
  #spillFd: number | undefined;
  #spilledBytes = 0;
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  count = 0;

  /** `spillPath`: where records go past 1 MiB (created then, removed by {@link dispose}). */
  constructor(spillPath: string) {
    this.#spillPath = spillPath;
  }

  add(record: DirRecord): void {
    const b = encode(record);
    this.#chunks.push(b);
    this.#chunkBytes += b.length;
    this.count++;
    if (this.#chunkBytes >= SPILL_BYTES) this.#spill();
  }

  #spill(): void {
    const all = Buffer.concat(this.#chunks, this.#chunkBytes);
    this.#spillFd ??= openSync(
      this.#spillPath,
      constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    );
    let off = 0;
    while (off < all.length)
      off += writeSync(this.#spillFd, all, off, all.length - off, this.#spilledBytes + off);
    this.#spilledBytes += all.length;
    this.#chunks = [];
    this.#chunkBytes = 0;
  }

  /** Every record, in the order added. */
  *records(): Generator<DirRecord> {
    let carry: Buffer = Buffer.alloc(0);
    const parse = function* (data: Buffer): Generator<DirRecord> {
      let at = 0;
      while (data.length - at >= 4) {
        const len = data.readUInt32LE(at);
        if (data.length - at < len) break;
        yield decode(data, at, len);
        at += len;
      }
      carry = data.subarray(at);
    };
    if (this.#spillFd !== undefined) {
      const buf = Buffer.allocUnsafe(SPILL_BYTES);
      for (let pos = 0; pos < this.#spilledBytes;) {
        const n = readSync(this.#spillFd, buf, 0, Math.min(buf.length, this.#spilledBytes - pos), pos);
        if (n <= 0) throw new Error(`short read of ${this.#spillPath}`);
        pos += n;
        // Copy: the next read reuses `buf` while `carry` may still point into it.
        yield* parse(Buffer.concat([carry, buf.subarray(0, n)]));
      }
    }
    yield* parse(Buffer.concat([carry, ...this.#chunks]));
    if (carry.length !== 0) throw new Error(`truncated record in ${this.#spillPath}`);
  }

  /**
   * Applies every record below `root` (owners only with `preserveOwner`), never following a
   * symlink; a later record for the same directory wins. `onError(rel, err)` turns an
   * unexpected fs error into the thrown one.
   */
  apply(
    root: string,
    preserveOwner: boolean,
    onError: (rel: string, err: unknown) => Error,
  ): ApplyDirsResult {
    const result: ApplyDirsResult = { applied: 0, dropped: 0 };
    const rootFd = openSync(root, DIR_FLAGS);
    const rootSt = fstatSync(rootFd, { bigint: true });
    const stack: Level[] = [{ name: "", fd: rootFd, dev: rootSt.dev, ino: rootSt.ino, pending: undefined }];
    let open = 1;
    let rel = "";

    const set = (fd: number, m: DirMeta): void => {
      if (preserveOwner) fchownSync(fd, m.uid, m.gid);
      fchmodSync(fd, m.mode); // after chown, which may clear set-id bits
      const t = m.mtimeMs / 1000;
      futimesSync(fd, t, t);
    };
    const flush = (l: Level): void => {
      if (l.pending === undefined) return;
      const m = l.pending;
      l.pending = undefined;
      set(l.fd, m);
      result.applied++;
    };
    const release = (l: Level): void => {
      if (l.fd < 0) return;
      flush(l);
      if (l.fd !== rootFd) {
        closeSync(l.fd);
        open--;
      }
      l.fd = -1;
    };
    /** Opens level `i` (its parent is open), checking it is still the directory it was. */
    const reopen = (i: number): boolean => {
      const l = stack[i] as Level;
      const parent = stack[i - 1] as Level;
      const fd = openDirAt(parent.fd, l.name);
      const st = fstatSync(fd, { bigint: true });
      if (st.ino !== l.ino || st.dev !== l.dev) {
        closeSync(fd);
        return false;
      }
      l.fd = fd;
      open++;
      return true;
    };
    /** Keeps the open fds under MAX_OPEN, never closing the root or the top. */
    const budget = (): void => {
      for (let i = 1; open > MAX_OPEN && i < stack.length - 1; i++) release(stack[i] as Level);
    };

    try {
      for (const r of this.records()) {
        rel = r.rel;
        try {
          const parts = r.rel === "" ? [] : r.rel.split("/");
          let k = 0;
          while (k < parts.length && k + 1 < stack.length && (stack[k + 1] as Level).name === parts[k]) k++;
          while (stack.length > k + 1) release(stack.pop() as Level);
          // The top must be open to walk further: reopen closed levels from the deepest open
          // ancestor (each checked to be the same directory).
          let j = stack.length - 1;
          while ((stack[j] as Level).fd < 0) j--;
          for (let i = j + 1; i < stack.length; i++) {
            if (!reopen(i)) throw Object.assign(new Error("replaced"), { code: "ENOENT" });
            budget();
          }
          for (let i = k; i < parts.length; i++) {
            const parent = stack[stack.length - 1] as Level;
            const fd = openDirAt(parent.fd, parts[i] as string);
            const st = fstatSync(fd, { bigint: true });
            stack.push({ name: parts[i] as string, fd, dev: st.dev, ino: st.ino, pending: undefined });
            open++;
            budget();
          }
          const top = stack[stack.length - 1] as Level;
          if (top.ino !== r.ino || top.dev !== r.dev) {
            // Another directory than the one the record was made for: the layer replaced it.
            result.dropped++;
            continue;
          }
          top.pending = { mode: r.mode, uid: r.uid, gid: r.gid, mtimeMs: r.mtimeMs };
        } catch (err) {
          if (!GONE.has((err as NodeJS.ErrnoException).code ?? "")) throw err;
          // The path, or a directory on it, is gone or was replaced by a symlink or a file.
          result.dropped++;
          const closed = stack.findIndex((l) => l.fd < 0);
          if (closed > 0) while (stack.length > closed) release(stack.pop() as Level);
        }
      }
      while (stack.length > 0) release(stack.pop() as Level);
    } catch (err) {
      throw onError(rel, err);
    } finally {
      for (const l of stack) if (l.fd >= 0 && l.fd !== rootFd) closeSync(l.fd);
      closeSync(rootFd);
    }
    return result;
  }

  /** Removes the spill file. */
  dispose(): void {
    if (this.#spillFd === undefined) return;
    closeSync(this.#spillFd);
    this.#spillFd = undefined;
    rmSync(this.#spillPath, { force: true });
  }
}
