/* Network scope enforcement (docs/security.md item 7): passt runs in a
 * cgroup v2 of its own, <cgroup2>/msb/passt-<pid>, with cgroup-BPF programs
 * attached that refuse its connect()/sendmsg() to destinations the scope
 * does not allow, and its ping sockets.  The programs are hand-assembled
 * (no compiler, no libbpf) from the rules below.
 *
 * Refused (public and group): loopback, unspecified (0/8, ::), private
 * (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16,
 * fe80::/10, fec0::/10), CGNAT (100.64/10), multicast and reserved (224/4,
 * 240/4 with the broadcast, ff00::/8), IPv4-compatible and IPv4-mapped IPv6
 * and NAT64 (64:ff9b::/96) whose IPv4 part is refused, and the host's own
 * addresses (taken when the sandbox starts).  Allowed anyway: the
 * host's resolv.conf name servers on port 53 (passt forwards the guest's DNS
 * there), for scope group 127.0.0.1 on the group's forwarded host ports,
 * and UDP to a peer that sent passt a datagram first (replies on forwarded
 * UDP ports).  Everything else is allowed.
 *
 * Needs root, or CAP_BPF + CAP_NET_ADMIN and a writable cgroup2; without
 * them starting a filtered scope fails (never a silent fallback). */
#ifndef MSB_SANDBOX_SCOPE_H
#define MSB_SANDBOX_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

#define SCOPE_MAX_NS	8    /* name servers kept from resolv.conf */
#define SCOPE_MAX_PORTS 128  /* group ports */
#define SCOPE_MAX_HOST	32   /* the host's own addresses refused */
#define SCOPE_MAX_PEERS 4096 /* UDP peers remembered (LRU) */

struct scope_addr {
	int family;    /* AF_INET or AF_INET6 */
	uint8_t a[16]; /* network order; IPv4 in a[0..3] */
};

struct scope_rules {
	struct scope_addr ns[SCOPE_MAX_NS]; /* allowed on port 53 (TCP and UDP) */
	size_t nns;
	uint16_t lo_ports[SCOPE_MAX_PORTS]; /* allowed on 127.0.0.1 (scope group) */
	size_t nlo_ports;
	/* refused: the host's own addresses, whatever their range (a public
	 * address of the host reaches its services as well as 127.0.0.1) */
	struct scope_addr host[SCOPE_MAX_HOST];
	size_t nhost;
	/* UDP peers that wrote to passt first may be answered whatever their
	 * address: the BPF map that records them (scope_peer_map_create), or
	 * <= 0 for none (then UDP replies to refused addresses are refused). */
	int peer_map;
};

/* The `nameserver` addresses of resolv.conf text (`len` bytes, any bytes):
 * at most `max` kept, in order, duplicates dropped; IPv6 zone suffixes
 * (%eth0) are cut; lines that are not a valid name server are ignored.
 * Returns the number kept.  Pure. */
size_t scope_parse_resolv(const char *text, size_t len, struct scope_addr *out, size_t max);

/* The mount point of the first cgroup2 file system in /proc/self/mountinfo
 * text, octal escapes decoded, into out (outsz bytes).  -1 when there is none
 * or it does not fit.  Pure. */
int scope_cgroup2_from_mountinfo(const char *text, size_t len, char *out, size_t outsz);

/* The host's interface addresses (getifaddrs) that the refused ranges do not
 * already cover (loopback, private, link-local... left out): at most max, no
 * duplicates.  Returns the number kept (0 when they cannot be listed);
 * *more is set when there were more than max. */
size_t scope_host_addrs(struct scope_addr *out, size_t max, bool *more);

/* Whether a falls in one of the ranges every filtered scope refuses
 * (IPv4: 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16,
 * 224/3; IPv6 by its first bits: fc00::/7, fe80::/10, fec0::/10, ff00::/8).
 * Pure. */
bool scope_in_refused_range(const struct scope_addr *a);

/* Whether msb may filter a scope here: root, or CAP_NET_ADMIN with CAP_BPF
 * (or CAP_SYS_ADMIN) in its effective set.  0, or -1 (kind system) with the
 * message that names scope_name and the ways out; checked before any VM
 * starts, so that a start that cannot succeed costs nothing. */
int scope_check_privileges(const char *scope_name, struct msb_err *err);

/* Add a group port (127.0.0.1:port); duplicates are dropped.  -1 (usage)
 * past SCOPE_MAX_PORTS. */
int scope_rules_add_port(struct scope_rules *r, uint16_t port, struct msb_err *err);

/* The hooks, in the order scope_progs_build produces them. */
enum scope_hook {
	SCOPE_CONNECT4,
	SCOPE_CONNECT6,
	SCOPE_SENDMSG4,
	SCOPE_SENDMSG6,
	SCOPE_RECVMSG4, /* record UDP peers (never refuse) */
	SCOPE_RECVMSG6,
	SCOPE_SOCK_CREATE, /* refuses ICMP (ping) sockets */
	SCOPE_NHOOKS
};
#define SCOPE_MAX_INSNS 512

/* Assemble hook h's program for r into out (SCOPE_MAX_INSNS slots of
 * struct bpf_insn); returns the instruction count.  Pure. */
size_t scope_prog_build(const struct scope_rules *r, enum scope_hook h, void *out);

/* The UDP peer map (an LRU hash, SCOPE_MAX_PEERS entries): a descriptor
 * (caller closes; loaded programs keep the map), or -1 (system). */
int scope_peer_map_create(struct msb_err *err);

/* Load hook h's program: a BPF descriptor (caller closes), or -1 (system;
 * EPERM when msb lacks the privileges). */
int scope_prog_load(const struct scope_rules *r, enum scope_hook h, struct msb_err *err);

/* Attach a loaded program to the cgroup directory cgroup_fd
 * (BPF_F_ALLOW_MULTI); -1 with errno. */
int scope_attach(int cgroup_fd, int prog_fd, enum scope_hook h);

/* Run a loaded CGROUP_SOCK_ADDR program once on a context (BPF_PROG_TEST_RUN):
 * its return value, or -1 with errno (EOPNOTSUPP etc. where the kernel cannot
 * test-run this program type).  For tests. */
int scope_prog_test_run(int prog_fd, int family, const void *addr, uint16_t port);

/* The cgroup2 mount point (/proc/self/mountinfo) into out; -1 (system) with
 * what to do when there is none. */
int scope_cgroup2_root(char *out, size_t outsz, struct msb_err *err);

/* Create <cgroup2>/msb/passt-<pid>, attach every hook's program for r
 * (BPF_F_ALLOW_MULTI) and move `pid` into it.  Empty stale msb/passt-*
 * cgroups whose process is gone are removed first.  -1 (system) with a
 * message naming the scope (`scope_name`) and the ways out; nothing is left
 * behind. */
int scope_confine(pid_t pid, const struct scope_rules *r, const char *scope_name,
		  struct msb_err *err);

/* Remove <cgroup2>/msb/passt-<pid> once `pid` is reaped (quietly absent). */
void scope_release(pid_t pid);

/* Remove empty msb/passt-* cgroups whose process no longer exists. */
void scope_prune_stale(const char *cg2root);

#endif
