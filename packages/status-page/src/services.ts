/**
 * Who answers `$SRV.INFO` on the bus: every instance of every NATS service, through
 * @nats-io/services' client (a request to `$SRV.INFO` gathering the replies for a fixed window).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { serviceInstanceOf } from "./model.js";
import type { ServiceInstance } from "./model.js";

/** What one `$SRV.INFO` round found. */
export type ServicePoll =
  | { readonly ok: true; readonly instances: readonly ServiceInstance[] }
  /** No answer at all (no responders, a timeout, a permission error): why. */
  | { readonly ok: false; readonly reason: string };

/** How long replies are gathered. */
export const SERVICE_POLL_WINDOW_MS = 1_000;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Asks every service for its info and gathers the replies for `windowMs`. Never throws. */
export async function pollServices(
  nc: NatsConnection,
  windowMs = SERVICE_POLL_WINDOW_MS,
): Promise<ServicePoll> {
  const client = new Svcm(nc).client({ strategy: "timer", maxWait: windowMs });
  const instances: ServiceInstance[] = [];
  try {
    for await (const info of await client.info()) {
      const i = serviceInstanceOf(info);
      if (i !== undefined) instances.push(i);
    }
  } catch (err) {
    const text = message(err);
    if (instances.length === 0) {
      return {
        ok: false,
        reason: /no responders/i.test(text) ? "no service answers $SRV.INFO" : `$SRV.INFO: ${text}`,
      };
    }
  }
  if (instances.length === 0) return { ok: false, reason: "no service answers $SRV.INFO" };
  return { ok: true, instances };
}
