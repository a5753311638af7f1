/** Human-readable sizes, ages and durations for the CLI's output and flags. */
import { UserError } from "./errors.js";

const UNITS = [
  { suffix: "Ti", bytes: 2 ** 40 },
  { suffix: "Gi", bytes: 2 ** 30 },
  { suffix: "Mi", bytes: 2 ** 20 },
  { suffix: "Ki", bytes: 2 ** 10 },
] as const;

/**
 * A byte count in binary units, as Kubernetes writes quantities: `64Mi`, `1Gi`, `1434Mi`
 * (exact in the largest unit it fills, else exact in the next smaller one), otherwise one
 * decimal (`97.7Ki`). Below 1 KiB: `512B`. Memory limits are whole MiB, so they are always exact.
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "-";
  const n = Math.round(bytes);
  for (let i = 0; i < UNITS.length; i++) {
    const unit = UNITS[i]!;
    if (n < unit.bytes) continue;
    if (n % unit.bytes === 0) return `${n / unit.bytes}${unit.suffix}`;
    const smaller = UNITS[i + 1];
    if (smaller && n % smaller.bytes === 0 && n / smaller.bytes < 100_000) {
      return `${n / smaller.bytes}${smaller.suffix}`;
    }
    return `${(n / unit.bytes).toFixed(1).replace(/\.0$/, "")}${unit.suffix}`;
  }
  return `${n}B`;
}

/**
 * A duration as `kubectl get` writes ages: `45s`, `5m3s`, `65m`, `3h5m`, `23h`, `2d3h`, `400d`,
 * `2y10d`. Negative durations (clock skew) read as `0s`.
 */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 192) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (d < 730) return `${d}d`;
  const y = Math.floor(d / 365);
  return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const FACTOR: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a flag's duration: `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds. Throws a
 * UserError naming the flag for anything else.
 */
export function parseDuration(text: string, flag = "duration"): number {
  const match = DURATION.exec(text.trim());
  if (!match) {
    throw new UserError(
      `${flag} must be a duration such as 30s, 2m, 1h or 500ms; got ${JSON.stringify(text)}`,
    );
  }
  const ms = Number(match[1]) * FACTOR[match[2] ?? "s"]!;
  if (!Number.isFinite(ms) || ms <= 0 || ms > 2_147_483_647) {
    throw new UserError(`${flag} must be more than 0 and at most 24 days; got ${JSON.stringify(text)}`);
  }
  return Math.round(ms);
}
