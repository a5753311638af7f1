/**
 * The ordering rule of tables written by replicas racing on one key (the spec-builder's
 * TaskConfig): every record carries the `configRevision` of the source change it came from — a
 * value in its JSON, a delete in the {@link CONFIG_REVISION_HEADER} header of its KV delete
 * marker (a tombstone) — and a write lands only over an older record. Pure decisions here; the
 * compare-and-set writes are in Publication.putIfNewer and Publication.deleteIfNotNewer.
 */

/** The header of a KV delete marker that says which configRevision deleted the key. */
export const CONFIG_REVISION_HEADER = "Eve-Tasks-Config-Revision";

/** The KV operation header nats.js and every KV client read (`DEL`, `PURGE`; none for a value). */
export const KV_OPERATION_HEADER = "KV-Operation";

/** The last record of a key, as the ordering rule sees it. */
export type StoredRecord =
  | { kind: "none" }
  | {
      kind: "value";
      /** KV revision (stream sequence) of the record. */
      revision: number;
      /** The value's `configRevision`; undefined when it has none (then any write is newer). */
      configRevision: number | undefined;
      /** The value's JSON text, to recognise an identical write. */
      text: string;
    }
  | {
      kind: "tombstone";
      revision: number;
      /** From the marker's header; undefined for a plain KV delete (then any write is newer). */
      configRevision: number | undefined;
    };

/** What a write of a value at `configRevision` does. */
export type PutPlan =
  { action: "put"; previousSeq: number } | { action: "skip"; result: "stale" | "unchanged" };

/** What a delete at `configRevision` does. */
export type DeletePlan =
  /** Writes a tombstone; `result` says whether a value was there ("deleted") or not ("absent"). */
  | { action: "tombstone"; previousSeq: number; result: "deleted" | "absent" }
  | { action: "skip"; result: "stale" | "absent" };

/**
 * A value at `configRevision` replaces a value of a lower or equal configRevision (equal: the
 * same source revision built again, e.g. after its seed changed) unless it is identical, and a
 * tombstone only of a lower one: at equal revisions the delete wins.
 */
export function planPut(stored: StoredRecord, configRevision: number, text: string): PutPlan {
  switch (stored.kind) {
    case "none":
      return { action: "put", previousSeq: 0 };
    case "value":
      if (stored.configRevision !== undefined && stored.configRevision > configRevision)
        return { action: "skip", result: "stale" };
      if (stored.text === text) return { action: "skip", result: "unchanged" };
      return { action: "put", previousSeq: stored.revision };
    case "tombstone":
      if (stored.configRevision !== undefined && stored.configRevision >= configRevision)
        return { action: "skip", result: "stale" };
      return { action: "put", previousSeq: stored.revision };
  }
}

/**
 * A delete at `configRevision` replaces a value of a lower or equal configRevision, and leaves a
 * tombstone even where there is no value (absent, or deleted at a lower revision), so that a
 * replica still holding an older source revision cannot write it afterwards.
 */
export function planDelete(stored: StoredRecord, configRevision: number): DeletePlan {
  switch (stored.kind) {
    case "none":
      return { action: "tombstone", previousSeq: 0, result: "absent" };
    case "value":
      if (stored.configRevision !== undefined && stored.configRevision > configRevision)
        return { action: "skip", result: "stale" };
      return { action: "tombstone", previousSeq: stored.revision, result: "deleted" };
    case "tombstone":
      if (stored.configRevision !== undefined && stored.configRevision >= configRevision)
        return { action: "skip", result: "absent" };
      return { action: "tombstone", previousSeq: stored.revision, result: "absent" };
  }
}

/** A configRevision from a header value: a non-negative integer, or undefined. */
export function parseConfigRevision(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d{1,15}$/.test(header.trim())) return undefined;
  return Number(header.trim());
}
