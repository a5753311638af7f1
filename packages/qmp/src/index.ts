export { connectQmp, QmpClient } from "./client.js";
export type { ConnectQmpOptions, ExecuteOptions } from "./client.js";
export {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpError,
  QmpProtocolError,
  QmpTimeoutError,
} from "./errors.js";
export type { QmpConnectFailure } from "./errors.js";
export { DEFAULT_MAX_LINE_BYTES, LineDecoder, LineTooLongError, parseQmpMessage } from "./lines.js";
export type { QemuVersion, QmpEvent, QmpGreeting, QmpMessage, QmpTimestamp } from "./lines.js";
