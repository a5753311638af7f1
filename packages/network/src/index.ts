/**
 * @eve-tasks/network: network instances and task interfaces on one node (contract v2
 * "Networks"). Pure modules decide (names, ipam, validate, nft, dnsmasq-config, app-plan,
 * task-files, the plan* functions); NodeNetwork and the setup/teardown/sweep functions act
 * through iproute2, tc, nft and dnsmasq.
 */
export * from "./errors.js";
export * from "./names.js";
export * from "./exec.js";
export { CommandServer, DEFAULT_COMMAND_TIMEOUT_MS, shellQuote } from "./command-server.js";
export { NETNS_HELPER_LIBS, NETNS_HELPER_SOURCE, NetnsHelper } from "./netns-helper.js";
export * from "./files.js";
export * from "./ipam.js";
export * from "./ipam-store.js";
export * from "./validate.js";
export * from "./nft.js";
export * from "./dnsmasq-config.js";
export * from "./dnsmasq.js";
export * from "./task-files.js";
export * from "./task-netns.js";
export * from "./bridge.js";
export * from "./app-plan.js";
export * from "./sweep.js";
export * from "./node-network.js";
export * from "./qemu.js";
