/** What building one AppInstanceConfig revision gives: the TaskConfig to write, or why none can be. */
import type {
  EncodedValue,
  FailedTaskConfig,
  HypervisorSeed,
  ImageSeed,
  PendingTaskConfig,
  ReadyTaskConfig,
} from "@eve-tasks/schemas";

/** Why a config revision gave a FAILED TaskConfig. */
export type FailureReason =
  /** The stored value is over 64 KiB. */
  | "too-large"
  /** The stored value is not JSON. */
  | "malformed-json"
  /** The value fails the AppInstanceConfig schema (an unknown virtualization mode included). */
  | "schema"
  /** The value's uuid is not its key. */
  | "uuid-mismatch"
  /** The image seed of `root.image` failed (the hypervisor-seed-fetcher's error, passed on). */
  | "seed"
  /** The config's process or resources cannot be put into a spec (e.g. a user name). */
  | "spec"
  /** The runtime's image cannot run tasks (not a runtime image, a label the node cannot use, no loader). */
  | "runtime"
  /** The built TaskConfig would be over 64 KiB. */
  | "output-too-large"
  /** Building kept failing until the work queue gave up. */
  | "gave-up";

/** The result of building one config revision. */
export type BuildOutcome =
  | {
      readonly status: "READY";
      readonly taskConfig: ReadyTaskConfig;
      /** `taskConfig` validated and encoded for the bus, written as it is. */
      readonly encoded: EncodedValue;
    }
  /** An image root whose seed is not on the node yet (not published, or being pulled). */
  | { readonly status: "PENDING"; readonly taskConfig: PendingTaskConfig }
  | { readonly status: "FAILED"; readonly reason: FailureReason; readonly taskConfig: FailedTaskConfig }
  /**
   * Nothing can be written: the key is not a uuid, so no TaskConfig (keyed and identified by the
   * uuid) can carry the error. The worker logs `message`.
   */
  | { readonly status: "UNREPORTABLE"; readonly message: string };

/** Which key and KV revision is being built, and when. */
export interface BuildContext {
  /** The AppInstanceConfig's key: the app's uuid. */
  readonly key: string;
  /** The KV revision the config was stored at: the TaskConfig's `configRevision`. */
  readonly revision: number;
  /** When the build happens: the time of a FAILED TaskConfig's error. */
  readonly time: Date;
  /**
   * The ImageSeed of the config's `root.image` (key `imageSeedKey(config.node, ref)`), as read
   * just before the build; undefined when there is none (or the config has no image root).
   */
  readonly imageSeed?: ImageSeed | undefined;
  /**
   * A runtime task's runtime seed (key `hypervisorSeedKey(config.node, <runtime name>)`, the name
   * `runtime.tools` or a VM's `vm.hypervisorTools`), as read just before the build; undefined when
   * there is none.
   */
  readonly toolsSeed?: HypervisorSeed | undefined;
  /** Whether `HypervisorToolsConfig.<runtime name>` is published (undefined: not looked up). */
  readonly toolsConfigured?: boolean | undefined;
  /**
   * For a native app that names its arch: the node's `emulators` runtime seed, as read just
   * before the build; undefined when there is none.
   */
  readonly emulatorsSeed?: HypervisorSeed | undefined;
}
