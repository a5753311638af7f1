/**
 * @eve-tasks/embedded: starts and stops the project-private nats-server and containerd (own
 * configs, sockets and stores), cleans containerd up after tests, and checks host prerequisites.
 */
export * from "./errors.js";
export * from "./process.js";
export * from "./executables.js";
export * from "./net-probe.js";
export * from "./nats-server.js";
export * from "./nats-permissions.js";
export * from "./nats-credentials.js";
export * from "./containerd-config.js";
export * from "./containerd.js";
export * from "./containerd-cleanup.js";
export * from "./prerequisites.js";
export { mountsBelow, removeTreeSafely } from "./remove-tree.js";
export * from "./fleet-nats.js";
