/**
 * Where the runtime-image contract puts things inside a runtime task: the app's artifacts, and
 * the QMP socket of a runtime stopped by QMP (in a directory the executor binds from
 * `EVE_RUN_DIR`). Node-independent: what a runtime does with them is its loader's business.
 */

/** The directory of a runtime task's artifacts: `/eve/artifacts/<name>`. */
export const ARTIFACTS_DIR = "/eve/artifacts";

/** Where artifact `name` is inside the task. */
export function artifactPath(name: string): string {
  return `${ARTIFACTS_DIR}/${name}`;
}

/** The task-side directory of the QMP socket (bound from `<EVE_RUN_DIR>/vm/<uuid>`). */
export const QMP_DIR_IN_TASK = "/run/eve-vm";
/** The QMP socket's file name, in {@link QMP_DIR_IN_TASK} and in the host directory alike. */
export const QMP_SOCKET_NAME = "qmp.sock";
/** `EVE_TASK_QMP_SOCKET` of a runtime stopped by QMP. */
export const QMP_SOCKET_IN_TASK = `${QMP_DIR_IN_TASK}/${QMP_SOCKET_NAME}`;
