import { defineConfig } from "vitest/config";

/**
 * Tests that need root, a server (nats-server, containerd, a registry, qemu) or a host tool
 * Debian installs (qemu, skopeo, containerd's API protos). They run in the `e2e` project, whose
 * global set-up starts one private nats-server and containerd per run. Every other test file is
 * a `unit` test: no root, no servers, seconds on any machine (`npm run test:unit`).
 */
const E2E = [
  "test/**/*.test.ts",
  "packages/*/test/**/*.e2e.test.ts",
  "services/*/test/**/*.e2e.test.ts",
  // Mixed files outside the CLI, kept whole: a real cgroup, a real KV, a real qemu.
  "packages/executor/test/staged-mounts.test.ts",
  // Network namespaces, bridges, nft and dnsmasq: root.
  "packages/network/test/dnsmasq.test.ts",
  "packages/network/test/lifecycle.test.ts",
  "packages/network/test/netns-helper.test.ts",
  "packages/network/test/local-instance.test.ts",
  "packages/network/test/switch-and-vm.test.ts",
  "packages/procfs/test/task-sampler.test.ts",
  "packages/qmp/test/client.test.ts",
  "packages/qmp/test/probe.test.ts",
  "packages/tools-image/test/build.test.ts",
  "packages/tools-image/test/register.test.ts",
  "services/proc-monitor/test/anchor-tax-store.test.ts",
];
/** Files under test/ that are unit tests all the same. */
const UNIT_UNDER_TEST = ["test/bench-stats.test.ts", "test/docs-links.test.ts"];

const common = {
  exclude: ["**/node_modules/**", "**/dist/**"],
  pool: "forks" as const,
  testTimeout: 60_000,
  hookTimeout: 60_000,
};

export default defineConfig({
  test: {
    reporters: ["default", "./test/harness/summary-reporter.ts"],
    projects: [
      {
        test: {
          ...common,
          name: "unit",
          include: ["packages/*/test/**/*.test.ts", "services/*/test/**/*.test.ts", ...UNIT_UNDER_TEST],
          exclude: [...common.exclude, ...E2E.filter((f) => !f.startsWith("test/"))],
        },
      },
      {
        test: {
          ...common,
          name: "e2e",
          include: E2E,
          exclude: [...common.exclude, ...UNIT_UNDER_TEST],
          globalSetup: ["test/harness/global-setup.ts"],
        },
      },
    ],
  },
});
