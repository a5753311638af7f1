// The project's own proto/containerd definitions must match containerd's originals: same
// packages, services, methods, messages, field names, numbers and types. The originals come
// from Debian's golang-github-containerd-containerd-dev (read, never copied).
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEBIAN_CONTAINERD_API_DIR, compareWithUpstream } from "@eve-tasks/containerd/proto-check";

describe("proto/containerd", () => {
  it.skipIf(!existsSync(DEBIAN_CONTAINERD_API_DIR))(
    "matches containerd's API (golang-github-containerd-containerd-dev)",
    () => {
      expect(compareWithUpstream()).toEqual([]);
    },
  );
});
