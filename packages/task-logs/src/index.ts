/**
 * @eve-tasks/task-logs: reading a task's rotated console log (`console.log`, `console.log.1`, …)
 * from a cursor that survives rotation, the tail of it, or the files written since a time; and
 * answering LogsRequests with it, waiting for new output for followers.
 */
export {
  cursorPosition,
  endOf,
  laterOf,
  logFileNumber,
  orderLogFiles,
  planRead,
  sincePosition,
} from "./plan.js";
export type { LogFile, LogPosition, ReadPlan } from "./plan.js";
export {
  TAIL_SCAN_MAX_BYTES,
  logEndCursor,
  listLogFiles,
  readLogFrom,
  readLogChunk,
  tailPosition,
} from "./reader.js";
export type { LogChunk, LogSpan, ReadLogOptions } from "./reader.js";
export { LogWatchers, TooManyFollowersError } from "./watch.js";
export { TASK_LOGS_DEFAULTS, TaskLogsService } from "./serve.js";
export type { TaskLogsObserver, TaskLogsServiceOptions } from "./serve.js";
