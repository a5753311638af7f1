#!/usr/bin/env node
/** The `eve-tasks` executable: wires the real process (stdio, signals, exit code) to runCli. */
import { processContext } from "./context.js";
import { runCli } from "./program.js";

const interrupt = new AbortController();
let interrupts = 0;
const onSignal = (): void => {
  // The first Ctrl-C lets the command clean up (close its watch); a second one ends at once.
  interrupts += 1;
  if (interrupts > 1) process.exit(130);
  interrupt.abort();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
// `eve-tasks watch | head`: a closed pipe ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const code = await runCli(processContext(interrupt.signal), process.argv);
// Exit once stdout and stderr are flushed, rather than when the event loop empties: after a
// reconnect, nats.js can keep timers alive for a second or more after the connection is closed.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
