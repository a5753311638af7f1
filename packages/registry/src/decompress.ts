/** Layer decompression: gzip (node:zlib), zstd (fzstd, pure JS: Node 20's zlib has none), or none. */
import { PassThrough, Transform } from "node:stream";
import type { TransformCallback } from "node:stream";
import { createGunzip } from "node:zlib";
import { Decompress } from "fzstd";
import type { LayerCompression } from "./manifest.js";

/** A streaming zstd decompressor as a Transform. */
export class ZstdDecompressStream extends Transform {
  readonly #zstd: Decompress;

  constructor() {
    super();
    // fzstd may hand out views of its window buffer: copy before it is reused.
    this.#zstd = new Decompress((chunk) => {
      if (chunk.length > 0) this.push(Buffer.from(chunk));
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.#zstd.push(chunk);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.#zstd.push(new Uint8Array(0), true);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }
}

/** A Transform that decompresses `compression`. */
export function decompressor(compression: LayerCompression): Transform {
  switch (compression) {
    case "gzip":
      return createGunzip({ chunkSize: 256 * 1024 });
    case "zstd":
      return new ZstdDecompressStream();
    case "none":
      return new PassThrough();
  }
}
