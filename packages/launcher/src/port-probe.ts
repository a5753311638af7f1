/** Is a TCP port free to bind? */
import { createServer } from "node:net";

/** True when `host:port` can be bound now (the probe closes at once); false when it is in use. */
export function portIsFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
