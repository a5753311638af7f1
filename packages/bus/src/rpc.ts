/**
 * Request/reply with a schema on both sides, for acknowledgements such as the signal request
 * (`eve.rpc.task-executor.<node>.signal`). The reply is an acknowledgement only; effects show in
 * status and events.
 */
import type { Subscription as NatsSubscription } from "@nats-io/nats-core";
import { RequestError as NatsRequestError, TimeoutError, nuid } from "@nats-io/nats-core";
import type { z } from "zod";
import { decodeValue, encodeValue } from "@eve-tasks/schemas";
import type { Bus } from "./connection.js";
import { BusError } from "./errors.js";

/** A served subject; {@link Responder.close} stops answering (in-flight replies finish). */
export interface Responder {
  close(): Promise<void>;
}

/** What {@link serve} answers with. */
export interface ServeOptions<Req extends z.ZodType, Rep extends z.ZodType> {
  subject: string;
  request: Req;
  reply: Rep;
  /** Called for every valid request; its result is the reply. A throw becomes `onError`'s reply. */
  handle(request: z.output<Req>): Promise<z.input<Rep>> | z.input<Rep>;
  /** The reply to an invalid request or a handler failure (`message` says what went wrong). */
  onError(message: string): z.input<Rep>;
}

/**
 * Answers requests on `subject` one at a time per message, in arrival order of their handling.
 * An undecodable request gets `onError`'s reply naming the problem; nothing throws out.
 */
export function serve<Req extends z.ZodType, Rep extends z.ZodType>(
  bus: Bus,
  o: ServeOptions<Req, Rep>,
): Responder {
  const sub: NatsSubscription = bus.nc.subscribe(o.subject, {
    callback: (err, msg) => {
      if (err) return void bus.logger.warn({ err, subject: o.subject }, "request subscription ended");
      void (async () => {
        let reply: z.input<Rep>;
        const r = decodeValue(o.request, msg.data);
        if (!r.ok) reply = o.onError(`invalid request: ${r.message}`);
        else {
          try {
            reply = await o.handle(r.value);
          } catch (e) {
            reply = o.onError((e as Error).message);
          }
        }
        if (msg.reply) msg.respond(encodeValue(o.reply, reply, { type: "reply" }));
      })().catch((e: unknown) => bus.logger.error({ err: e, subject: o.subject }, "cannot reply"));
    },
  });
  return {
    async close() {
      await sub.drain();
    },
  };
}

/** A request nobody answered, or whose answer was not a valid reply. */
export class RequestError extends BusError {
  constructor(
    message: string,
    readonly subject: string,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

/**
 * Sends a validated request and returns the validated reply. `replyPrefix`: receive the reply on
 * `<replyPrefix>.<unique token>` (a subscription of its own) instead of the connection's shared
 * inbox; it must lie below the connection's inbox prefix (see nodeReplyPrefix).
 */
export async function request<Req extends z.ZodType, Rep extends z.ZodType>(
  bus: Bus,
  subject: string,
  schemas: { request: Req; reply: Rep },
  body: z.input<Req>,
  timeoutMs = 5000,
  options: { replyPrefix?: string } = {},
): Promise<z.output<Rep>> {
  let msg;
  try {
    msg = await bus.nc.request(subject, encodeValue(schemas.request, body, { type: "request" }), {
      timeout: timeoutMs,
      ...(options.replyPrefix === undefined
        ? {}
        : { noMux: true, reply: `${options.replyPrefix}.${nuid.next()}` }),
    });
  } catch (err) {
    if (err instanceof NatsRequestError && err.isNoResponders()) {
      throw new RequestError(`nobody answers ${subject} (is the worker running?)`, subject);
    }
    if (err instanceof TimeoutError || (err as { cause?: unknown }).cause instanceof TimeoutError) {
      throw new RequestError(`no answer on ${subject} within ${timeoutMs} ms`, subject);
    }
    throw err;
  }
  const r = decodeValue(schemas.reply, msg.data);
  if (!r.ok) throw new RequestError(`invalid reply on ${subject}: ${r.message}`, subject);
  return r.value;
}
