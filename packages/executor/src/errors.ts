/**
 * A node-local fact rules the config out: a path that does not exist or lies outside
 * EVE_VOLUME_ROOTS, more memory than the node has. The message is for the user: it goes
 * into the app's TaskStatus.error as it is.
 */
export class NodeFactError extends Error {
  override name = "NodeFactError";
  constructor(
    message: string,
    readonly uuid?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
