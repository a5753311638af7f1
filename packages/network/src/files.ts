/** Atomic file writes: a temp file in the same directory, fsynced, renamed over the target. */
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

let counter = 0;

/**
 * Writes `text` to `path` so a reader sees the old or the new content, never a mix. With
 * `durable` (the default) the data and the rename are fsynced, so they survive a power cut;
 * files rebuilt at every start skip that.
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  mode = 0o644,
  durable = true,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${counter++}.tmp`);
  try {
    const fh = await open(tmp, "w", mode);
    try {
      await fh.writeFile(text);
      await fh.chmod(mode);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (!durable) return;
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
