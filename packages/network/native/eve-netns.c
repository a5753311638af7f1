/*
 * eve-netns: builds and removes task network namespaces over netlink, for the task-executor.
 *
 * One long-lived process per executor, started once: each request is one line on stdin, each
 * answer one line on stdout, in order. It does what `ip netns add` + `ip link add … type veth`
 * + `ip -n <task> addr/route …` do (and `ip link del` + `ip netns del`), with no process started
 * per task: it enters the namespaces itself (setns), which Node cannot.
 *
 *   <id> setup <netns> <hostns|-> <n> [<hostIf> <ifName> <mac> <mtu> <bridge> <ip> <prefix> <gw|->]×n
 *   <id> teardown <netns> <hostns|-> <n> [<hostIf>]×n
 *   <id> nft <hostns|-> <bytes>      followed by exactly <bytes> of an nft script
 *   → <id> ok
 *   → <id> err <stage> <message>        stage: args | host (netns, veths, bridge ports) | task
 *
 * <netns> is created as /run/netns/<netns> (shared mount propagation, as iproute2 does, so every
 * mount namespace sees it); <hostns> names the netns under /run/netns where the bridges live, `-`
 * for this process's own. A failed setup leaves what it made: the caller tears down (teardown is
 * idempotent: what is already gone is not an error). Every name is checked against the kernel's
 * limits and a conservative character set before any system call.
 *
 * `nft` applies a ruleset script in <hostns> as `nft -f` does (one transaction), with libnftables.
 *
 * Written by hand because no Debian package offers netlink and setns to a long-lived caller (the
 * iproute2 and nftables tools start a process per namespace and per change); libmnl builds and
 * parses the messages, libnftables applies rulesets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <net/if.h> /* before the kernel's headers, which would redefine IFF_* */
#include <nftables/libnftables.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NETNS_DIR "/run/netns"
#define MAX_IFS 16
#define MAX_ARGS (5 + 8 * MAX_IFS)

struct iface {
  const char *host_if, *if_name, *bridge;
  unsigned char mac[6];
  unsigned mtu, prefix;
  struct in_addr ip, gw;
  int has_gw;
};

static char errbuf[512];
static const char *err_stage = "args";

/* Records the first error (stage and message) of a request; returns -1. */
static int fail(const char *stage, const char *fmt, ...) {
  va_list ap;
  err_stage = stage;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  for (char *p = errbuf; *p; p++)
    if (*p == '\n') *p = ' ';
  return -1;
}

/* A kernel interface name: 1-15 of [A-Za-z0-9_.-]. A netns name: 1-200 of the same, not . or ..*/
static int valid_name(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '.' || *s == '-'))
      return 0;
  return 1;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < min || v > max) return 0;
  *out = (unsigned)v;
  return 1;
}

static int parse_mac(const char *s, unsigned char mac[6]) {
  unsigned b[6];
  char tail;
  if (strlen(s) != 17 ||
      sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6)
    return 0;
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)b[i];
  return 1;
}

/* ---- netlink ------------------------------------------------------------------------------ */

struct nl {
  struct mnl_socket *sock;
  unsigned portid, seq;
};

/* A route netlink socket in the calling thread's current netns (it stays bound to that netns). */
static int nl_open(struct nl *nl) {
  nl->sock = mnl_socket_open(NETLINK_ROUTE);
  if (nl->sock == NULL) return -1;
  if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    mnl_socket_close(nl->sock);
    nl->sock = NULL;
    return -1;
  }
  nl->portid = mnl_socket_get_portid(nl->sock);
  nl->seq = (unsigned)time(NULL);
  return 0;
}

static void nl_close(struct nl *nl) {
  if (nl->sock != NULL) mnl_socket_close(nl->sock);
  nl->sock = NULL;
}

static struct nlmsghdr *nl_msg(struct nl *nl, char *buf, uint16_t type, uint16_t flags) {
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  nlh->nlmsg_seq = ++nl->seq;
  return nlh;
}

/* Sends one request and waits for its ack; -1 with errno set to the kernel's error. */
static int nl_talk(struct nl *nl, struct nlmsghdr *nlh) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  if (mnl_socket_sendto(nl->sock, nlh, nlh->nlmsg_len) < 0) return -1;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl->sock, buf, sizeof buf);
    if (n < 0) return -1;
    int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, nl->portid, NULL, NULL);
    if (r <= MNL_CB_STOP) return r < 0 ? -1 : 0;
  }
}

static struct ifinfomsg *put_ifinfo(struct nlmsghdr *nlh, int index, unsigned flags, unsigned change) {
  struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof *ifi);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  ifi->ifi_flags = flags;
  ifi->ifi_change = change;
  return ifi;
}

/* A veth pair: `host_if` here (MTU), its peer `if_name` (MAC, MTU) created in netns `peer_fd`. */
static int add_veth(struct nl *nl, const struct iface *i, int peer_fd) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_msg(nl, buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(nlh, 0, 0, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, i->host_if);
  mnl_attr_put_u32(nlh, IFLA_MTU, i->mtu);
  struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  put_ifinfo(nlh, 0, 0, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, i->if_name);
  mnl_attr_put(nlh, IFLA_ADDRESS, 6, i->mac);
  mnl_attr_put_u32(nlh, IFLA_MTU, i->mtu);
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_fd);
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  return nl_talk(nl, nlh);
}

/* Sets link `index` up, and on bridge `master` when it is not 0. */
static int link_up(struct nl *nl, int index, unsigned master) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_msg(nl, buf, RTM_NEWLINK, 0);
  put_ifinfo(nlh, index, IFF_UP, IFF_UP);
  if (master != 0) mnl_attr_put_u32(nlh, IFLA_MASTER, master);
  return nl_talk(nl, nlh);
}

static int del_link(struct nl *nl, const char *name) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_msg(nl, buf, RTM_DELLINK, 0);
  put_ifinfo(nlh, 0, 0, 0);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
  return nl_talk(nl, nlh);
}

static int add_addr(struct nl *nl, int index, struct in_addr ip, unsigned prefix) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_msg(nl, buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = (unsigned char)prefix;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = (unsigned)index;
  mnl_attr_put(nlh, IFA_LOCAL, 4, &ip);
  mnl_attr_put(nlh, IFA_ADDRESS, 4, &ip);
  return nl_talk(nl, nlh);
}

static int add_default_route(struct nl *nl, int index, struct in_addr gw) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct nlmsghdr *nlh = nl_msg(nl, buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
  rtm->rtm_family = AF_INET;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put(nlh, RTA_GATEWAY, 4, &gw);
  mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
  return nl_talk(nl, nlh);
}

/* ---- namespaces --------------------------------------------------------------------------- */

static int self_ns = -1; /* this process's own netns, returned to after every request */

static int enter(int fd) { return setns(fd, CLONE_NEWNET); }

/* /run/netns exists and propagates its mounts to every mount namespace (as `ip netns add` does). */
static int netns_dir_ready(void) {
  int made_mount = 0;
  if (mkdir(NETNS_DIR, 0755) < 0 && errno != EEXIST) return -1;
  while (mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0) {
    if (errno != EINVAL || made_mount) return -1;
    if (mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0) return -1;
    made_mount = 1;
  }
  return 0;
}

/* Creates netns /run/netns/<name>; returns an fd of it (this process stays where it was). */
static int create_netns(const char *name) {
  char path[300];
  snprintf(path, sizeof path, NETNS_DIR "/%s", name);
  if (netns_dir_ready() < 0) return fail("host", "cannot prepare " NETNS_DIR ": %s", strerror(errno));
  int f = open(path, O_RDONLY | O_CREAT | O_EXCL, 0);
  if (f < 0) return fail("host", "cannot create %s: %s", path, strerror(errno));
  close(f);
  if (unshare(CLONE_NEWNET) < 0) {
    int e = errno;
    unlink(path);
    return fail("host", "unshare(CLONE_NEWNET): %s", strerror(e));
  }
  int rc = mount("/proc/self/ns/net", path, "none", MS_BIND, NULL);
  int e = errno;
  int fd = rc == 0 ? open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC) : -1;
  if (enter(self_ns) < 0) {
    /* Cannot go back: nothing after this would be in the right place. */
    fprintf(stderr, "eve-netns: cannot return to its own netns: %s\n", strerror(errno));
    exit(3);
  }
  if (rc < 0) {
    unlink(path);
    return fail("host", "cannot bind-mount the netns on %s: %s", path, strerror(e));
  }
  if (fd < 0) return fail("host", "cannot open netns %s: %s", path, strerror(errno));
  return fd;
}

/* An fd of the netns where bridges live: `-` is this process's own. */
static int open_host_ns(const char *hostns) {
  if (strcmp(hostns, "-") == 0) return dup(self_ns);
  char path[300];
  snprintf(path, sizeof path, NETNS_DIR "/%s", hostns);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("host", "cannot open host netns %s: %s", path, strerror(errno));
  return fd;
}

/* ---- requests ----------------------------------------------------------------------------- */

static int setup(const char *netns, const char *hostns, int n, struct iface *ifs) {
  int rc = -1, task_fd = -1, host_fd = -1;
  struct nl nl = {0};
  if ((host_fd = open_host_ns(hostns)) < 0) goto out;
  if ((task_fd = create_netns(netns)) < 0) goto out;

  if (enter(host_fd) < 0 || nl_open(&nl) < 0) {
    fail("host", "cannot enter host netns %s: %s", hostns, strerror(errno));
    goto out;
  }
  for (int k = 0; k < n; k++) {
    struct iface *i = &ifs[k];
    unsigned br = if_nametoindex(i->bridge);
    if (br == 0) {
      fail("host", "bridge %s: %s", i->bridge, strerror(errno));
      goto out;
    }
    if (add_veth(&nl, i, task_fd) < 0) {
      fail("host", "link add %s type veth peer name %s: %s", i->host_if, i->if_name, strerror(errno));
      goto out;
    }
    int idx = (int)if_nametoindex(i->host_if);
    if (idx == 0 || link_up(&nl, idx, br) < 0) {
      fail("host", "link set %s master %s up: %s", i->host_if, i->bridge, strerror(errno));
      goto out;
    }
  }
  nl_close(&nl);

  if (enter(task_fd) < 0 || nl_open(&nl) < 0) {
    fail("task", "cannot enter netns %s: %s", netns, strerror(errno));
    goto out;
  }
  if (link_up(&nl, 1, 0) < 0) { /* loopback is always index 1 in a new netns */
    fail("task", "link set lo up: %s", strerror(errno));
    goto out;
  }
  for (int k = 0; k < n; k++) {
    struct iface *i = &ifs[k];
    int idx = (int)if_nametoindex(i->if_name);
    if (idx == 0 || link_up(&nl, idx, 0) < 0) {
      fail("task", "link set %s up: %s", i->if_name, strerror(errno));
      goto out;
    }
    if (add_addr(&nl, idx, i->ip, i->prefix) < 0) {
      fail("task", "addr add %s/%u dev %s: %s", inet_ntoa(i->ip), i->prefix, i->if_name, strerror(errno));
      goto out;
    }
    if (i->has_gw && add_default_route(&nl, idx, i->gw) < 0) {
      fail("task", "route add default via %s dev %s: %s", inet_ntoa(i->gw), i->if_name, strerror(errno));
      goto out;
    }
  }
  rc = 0;
out:
  nl_close(&nl);
  if (enter(self_ns) < 0) {
    fprintf(stderr, "eve-netns: cannot return to its own netns: %s\n", strerror(errno));
    exit(3);
  }
  if (task_fd >= 0) close(task_fd);
  if (host_fd >= 0) close(host_fd);
  return rc;
}

static int teardown(const char *netns, const char *hostns, int n, char **host_ifs) {
  int rc = 0, host_fd = -1;
  struct nl nl = {0};
  if (n > 0) {
    char path[300];
    snprintf(path, sizeof path, NETNS_DIR "/%s", hostns);
    if (strcmp(hostns, "-") == 0 || access(path, F_OK) == 0) {
      if ((host_fd = open_host_ns(hostns)) < 0 || enter(host_fd) < 0 || nl_open(&nl) < 0) {
        rc = fail("host", "cannot enter host netns %s: %s", hostns, strerror(errno));
      } else {
        for (int k = 0; k < n; k++)
          if (del_link(&nl, host_ifs[k]) < 0 && errno != ENODEV)
            rc = fail("host", "link del %s: %s", host_ifs[k], strerror(errno));
      }
    }
    nl_close(&nl);
    if (enter(self_ns) < 0) {
      fprintf(stderr, "eve-netns: cannot return to its own netns: %s\n", strerror(errno));
      exit(3);
    }
    if (host_fd >= 0) close(host_fd);
  }
  char path[300];
  snprintf(path, sizeof path, NETNS_DIR "/%s", netns);
  if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    rc = fail("host", "cannot unmount %s: %s", path, strerror(errno));
  if (unlink(path) < 0 && errno != ENOENT) rc = fail("host", "cannot remove %s: %s", path, strerror(errno));
  return rc;
}

#define MAX_NFT_BYTES (16u << 20)

/* Applies nft script `script` in netns `hostns` (one transaction). */
static int nft_apply(const char *hostns, const char *script) {
  int rc = -1, host_fd = open_host_ns(hostns);
  if (host_fd < 0) return -1;
  if (enter(host_fd) < 0) {
    close(host_fd);
    return fail("host", "cannot enter host netns %s: %s", hostns, strerror(errno));
  }
  /* The context's netlink socket belongs to the netns it is made in. */
  struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == NULL) {
    fail("host", "cannot make an nftables context");
  } else {
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    if (nft_run_cmd_from_buffer(ctx, script) != 0) {
      const char *e = nft_ctx_get_error_buffer(ctx);
      fail("host", "nft: %s", e != NULL && *e ? e : "the ruleset was refused");
    } else {
      rc = 0;
    }
    nft_ctx_free(ctx);
  }
  if (enter(self_ns) < 0) {
    fprintf(stderr, "eve-netns: cannot return to its own netns: %s\n", strerror(errno));
    exit(3);
  }
  close(host_fd);
  return rc;
}

/* Reads the <bytes> of an nft request from stdin and applies them; answers on stdout. */
static void handle_nft(int argc, char **argv) {
  const char *id = argv[0];
  unsigned n = 0;
  int rc = -1;
  err_stage = "args";
  if (argc != 4 || !parse_uint(argv[3], 1, MAX_NFT_BYTES, &n)) {
    /* Without a valid length the stream cannot be followed any more. */
    printf("%s err args expected: <id> nft <hostns|-> <bytes>\n", id);
    fflush(stdout);
    exit(2);
  }
  char *script = malloc((size_t)n + 1);
  if (script == NULL || fread(script, 1, n, stdin) != n) {
    printf("%s err args the script ended early\n", id);
    fflush(stdout);
    exit(2);
  }
  script[n] = '\0';
  if (strcmp(argv[2], "-") != 0 && !valid_name(argv[2], 200)) fail("args", "invalid netns name");
  else if (strlen(script) != n) fail("args", "the script holds a NUL byte");
  else rc = nft_apply(argv[2], script);
  free(script);
  if (rc == 0) printf("%s ok\n", id);
  else printf("%s err %s %s\n", id, err_stage, errbuf);
  fflush(stdout);
}

/* Parses and runs one request line (tokens in argv); answers on stdout. */
static void handle(int argc, char **argv) {
  const char *id = argc > 0 ? argv[0] : "0";
  int rc = -1;
  unsigned n = 0;
  err_stage = "args";
  if (argc < 5 || !parse_uint(argv[4], 0, MAX_IFS, &n)) {
    fail("args", "expected: <id> setup|teardown <netns> <hostns|-> <n> ...");
  } else if (!valid_name(argv[2], 200) || (strcmp(argv[3], "-") != 0 && !valid_name(argv[3], 200))) {
    fail("args", "invalid netns name");
  } else if (strcmp(argv[1], "setup") == 0) {
    struct iface ifs[MAX_IFS];
    if ((unsigned)argc != 5 + 8 * n) {
      fail("args", "setup of %u interfaces takes %u fields, got %d", n, 5 + 8 * n, argc);
      goto answer;
    }
    for (unsigned k = 0; k < n; k++) {
      char **f = argv + 5 + 8 * k;
      struct iface *i = &ifs[k];
      i->host_if = f[0];
      i->if_name = f[1];
      i->bridge = f[4];
      i->has_gw = strcmp(f[7], "-") != 0;
      if (!valid_name(f[0], IFNAMSIZ - 1) || !valid_name(f[1], IFNAMSIZ - 1) || !valid_name(f[4], IFNAMSIZ - 1) ||
          !parse_mac(f[2], i->mac) || !parse_uint(f[3], 68, 65535, &i->mtu) ||
          inet_pton(AF_INET, f[5], &i->ip) != 1 || !parse_uint(f[6], 0, 32, &i->prefix) ||
          (i->has_gw && inet_pton(AF_INET, f[7], &i->gw) != 1)) {
        fail("args", "interface %u: invalid field", k);
        goto answer;
      }
    }
    rc = setup(argv[2], argv[3], (int)n, ifs);
  } else if (strcmp(argv[1], "teardown") == 0) {
    if ((unsigned)argc != 5 + n) {
      fail("args", "teardown of %u interfaces takes %u fields, got %d", n, 5 + n, argc);
      goto answer;
    }
    for (unsigned k = 0; k < n; k++)
      if (!valid_name(argv[5 + k], IFNAMSIZ - 1)) {
        fail("args", "invalid interface name");
        goto answer;
      }
    rc = teardown(argv[2], argv[3], (int)n, argv + 5);
  } else {
    fail("args", "unknown request %s", argv[1]);
  }
answer:
  if (rc == 0) printf("%s ok\n", id);
  else printf("%s err %s %s\n", id, err_stage, errbuf);
  fflush(stdout);
}

int main(void) {
  self_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self_ns < 0) {
    perror("eve-netns: /proc/self/ns/net");
    return 1;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok != NULL && argc <= MAX_ARGS; tok = strtok(NULL, " \t\r\n"))
      argv[argc++] = tok;
    if (argc == 0) continue;
    if (argc > 1 && strcmp(argv[1], "nft") == 0) handle_nft(argc, argv);
    else handle(argc, argv);
  }
  free(line);
  return 0;
}
