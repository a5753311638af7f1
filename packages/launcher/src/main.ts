#!/usr/bin/env node
/** Entry point of `npm start`: `node packages/launcher/dist/main.js [--services-dir DIR] [--keep-tasks]`. */
import { ConfigError, loadConfig, natsConnection } from "@eve-tasks/runtime";
import { UsageError, parseLauncherArgs, usage } from "./args.js";
import { launcherEnvSchema } from "./config.js";
import { LauncherError, runLauncher } from "./launcher.js";

try {
  const args = parseLauncherArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(usage);
  } else {
    // The launcher reads the environment here only: its config, and what the workers inherit.
    const env = process.env;
    const config = loadConfig(launcherEnvSchema, env);
    // NATS_USER and its password come together (the launcher's own, with NATS_URL).
    natsConnection({ ...config, NATS_URL: config.NATS_URL ?? "" });
    await runLauncher({ config, args, env, out: process.stdout });
  }
} catch (err) {
  if (err instanceof UsageError || err instanceof ConfigError) {
    process.stderr.write(`eve-tasks launcher: ${err.message}\n${err instanceof UsageError ? usage : ""}`);
    process.exit(2);
  }
  process.stderr.write(`eve-tasks launcher: ${err instanceof LauncherError ? err.message : String(err)}\n`);
  process.exit(1);
}
