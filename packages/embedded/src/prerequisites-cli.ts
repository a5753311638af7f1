/**
 * `npm run prerequisites`: makes sure nats-server, containerd, runc, containerd-shim-runc-v2 and
 * ctr are installed (installing the Debian packages when run as root on Debian) and that cgroups
 * are mounted. With `--tests`, also the Debian packages the test suite needs
 * ({@link TEST_DEBIAN_PACKAGES}). Exits non-zero with the reason on failure.
 */
import { PrerequisiteError } from "./errors.js";
import { TEST_DEBIAN_PACKAGES, ensureDebianPackages, ensurePrerequisites } from "./prerequisites.js";

async function main(): Promise<number> {
  try {
    const report = await ensurePrerequisites({ log: (line) => console.log(`prerequisites: ${line}`) });
    for (const [command, path] of Object.entries(report.found))
      console.log(`prerequisites: ${command}: ${path}`);
    if (!report.root) {
      console.log(
        "prerequisites: warning: not running as root; containerd (and so task-executor and the tests) need root",
      );
    }
    const installed = [...report.installed];
    if (process.argv.includes("--tests")) {
      installed.push(
        ...(await ensureDebianPackages(TEST_DEBIAN_PACKAGES, {
          log: (line) => console.log(`prerequisites: ${line}`),
        })),
      );
    }
    console.log(`prerequisites: ok${installed.length > 0 ? ` (installed ${installed.join(" ")})` : ""}`);
    return 0;
  } catch (err) {
    const message = err instanceof PrerequisiteError || err instanceof Error ? err.message : String(err);
    console.error(`prerequisites: ${message}`);
    return 1;
  }
}

process.exitCode = await main();
