/**
 * @eve-tasks/testkit: a real eve-tasks system for other projects' tests. See README.md.
 */
export { startSystem } from "./system.js";
export type {
  NatsSource,
  NatsUserCredentials,
  RunningSystem,
  StartSystemOptions,
  SystemCredentials,
  SystemWorker,
} from "./system.js";
export { MAX_REPLICAS, SCALABLE_WORKERS, SYSTEM_WORKERS, planReplicas } from "./replicas.js";
export type { Replicas } from "./replicas.js";
export {
  IMAGE_REPOSITORY,
  OWNER_LABEL,
  dockerAvailable,
  ensureNatsImage,
  startNatsContainer,
} from "./nats-container.js";
export type { NatsContainerOptions, RunningNatsContainer } from "./nats-container.js";
export { TestkitError } from "./errors.js";
