/**
 * The size rule for bus values. Values up to 64 KiB (EVE's limit) are accepted; 64 KiB–1 MiB
 * is stored by NATS but reported as a FAILED "too large" by the receiver; over 1 MiB NATS refuses
 * the publish (the buckets' `maxValueSize`).
 */

/** Largest value a receiver accepts, in bytes (64 KiB). */
export const MAX_ACCEPTED_VALUE_BYTES = 65_536;

/** Largest value a bucket stores (`maxValueSize`), in bytes (1 MiB). */
export const MAX_STORED_VALUE_BYTES = 1_048_576;

/** `65536 bytes (64 KiB)`: a byte count with its binary unit, for messages. */
export function describeBytes(bytes: number): string {
  if (bytes >= 1_048_576 && bytes % 1_048_576 === 0) return `${bytes} bytes (${bytes / 1_048_576} MiB)`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes} bytes (${bytes / 1024} KiB)`;
  return `${bytes} bytes`;
}

/** `value is 102400 bytes; the limit is 65536 bytes (64 KiB)`. */
export function tooLargeMessage(sizeBytes: number, limitBytes: number = MAX_ACCEPTED_VALUE_BYTES): string {
  return `value is ${sizeBytes} bytes; the limit is ${describeBytes(limitBytes)}`;
}
