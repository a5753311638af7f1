/** SignalReply: the acknowledgement of a SignalRequest; the effect shows in status and events. */
import { z } from "zod";
import { expected } from "./error-messages.js";

/** `{ accepted: true, error: null }` or `{ accepted: false, error: "<why, for a human>" }`. */
export const SignalReplySchema = z.discriminatedUnion(
  "accepted",
  [
    z.object({
      accepted: z.literal(true),
      error: z.null({ error: expected("an accepted request has no error") }),
    }),
    z.object({
      accepted: z.literal(false),
      error: z
        .string({ error: expected("a refused request says why") })
        .min(1, { error: "a refused request says why" }),
    }),
  ],
  { error: expected("accepted must be true or false") },
);

/** A signal reply. */
export type SignalReply = z.infer<typeof SignalReplySchema>;
