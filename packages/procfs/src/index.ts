export { parseProcStat, readProcStat } from "./stat.js";
export type { ProcStat } from "./stat.js";
