/** What of an app's network interfaces goes into its task's spec. */
import { INTERFACES_ANNOTATION, interfacesAnnotation } from "@eve-tasks/schemas";
import type { AppInterface } from "@eve-tasks/schemas";

/**
 * The spec annotation naming the app's interfaces (see `interfacesAnnotation`): none without
 * interfaces, so a spec without them is what it always was. The netns, addresses and rules are
 * the task-executor's, from the TaskConfig's `interfaces`.
 */
export function networkAnnotations(interfaces: readonly AppInterface[]): Record<string, string> {
  const value = interfacesAnnotation(interfaces);
  return value === undefined ? {} : { [INTERFACES_ANNOTATION]: value };
}
