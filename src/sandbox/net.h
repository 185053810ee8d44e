/* A sandbox's network (docs/sandbox.md, "Networking"): one passt per
 * networked sandbox, connected to msb-vmm's virtio-net device by a socket
 * pair, forwarding the -p ports; the guest's eth0 is configured by SETUP.
 *
 * Scopes, as enforced here (upstream's names):
 *   none    no passt: the NIC's link is down and eth0 stays unconfigured;
 *           nothing leaves or reaches the guest over the network.
 *   public  outbound connections through passt (the host's own sockets) to
 *           public addresses only: passt runs in a cgroup whose BPF filter
 *           refuses loopback, private, link-local, CGNAT and multicast
 *           destinations and ping (scope.h); the host's name servers stay
 *           reachable on port 53.  Needs root (or CAP_BPF+CAP_NET_ADMIN).
 *   group   as public, and the gateway address (10.0.2.2) reaches the host's
 *           127.0.0.1 on the group's forwarded host ports only: the group is
 *           the sandboxes of one Sandboxfile whose scope is group.
 *   any     no filter, and the gateway address reaches every service on the
 *           host's 127.0.0.1.
 * Ports (-p) are forwarded from the host to the guest in every scope but none.
 */
#ifndef MSB_SANDBOX_NET_H
#define MSB_SANDBOX_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "project/pairs.h"
#include "project/sandboxfile.h"

/* The guest's side of passt's network. */
#define SANDBOX_NET_GUEST   "10.0.2.15"
#define SANDBOX_NET_PREFIX  24
#define SANDBOX_NET_GATEWAY "10.0.2.2"
#define SANDBOX_NET_DNS	    "10.0.2.3"
/* SETUP's NET value for the above. */
#define SANDBOX_NET_SETUP                                                               \
	SANDBOX_NET_GUEST "/" MSB_STRINGIFY(SANDBOX_NET_PREFIX) " " SANDBOX_NET_GATEWAY \
								" " SANDBOX_NET_DNS
#define MSB_STRINGIFY_(x) #x
#define MSB_STRINGIFY(x)  MSB_STRINGIFY_(x)

struct sandbox_port {
	char host_ip[16]; /* dotted quad the host side listens on; "" = all addresses */
	uint16_t host, guest;
	bool udp;
};

struct sandbox_net {
	enum msb_scope scope;
	struct sandbox_port *ports; /* owned (sandbox_net_clear) */
	size_t nports;
	/* scope group: host ports of the group's other sandboxes (owned) */
	uint16_t *group_ports;
	size_t ngroup_ports;
};

/* "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]" or "PORT[/tcp|/udp]"; ports
 * 1..65535, HOST_IP a dotted quad.  -1 (kind usage) with what to write. */
int sandbox_port_parse(const char *s, struct sandbox_port *out, struct msb_err *err);

/* Append one parsed port; -1 only when out of memory. */
int sandbox_net_add_port(struct sandbox_net *n, const struct sandbox_port *p, struct msb_err *err);
/* The Sandboxfile's ports (host:guest, TCP, all addresses) and scope. */
int sandbox_net_from_sandboxfile(const struct msb_sandbox *sb, struct sandbox_net *out,
				 struct msb_err *err);
void sandbox_net_clear(struct sandbox_net *n);
/* The group of scope group: the host ports of every sandbox in sf whose
 * scope is group (a no-op for other scopes). */
int sandbox_net_add_group(struct sandbox_net *n, const struct msb_sandboxfile *sf,
			  struct msb_err *err);

/* passt's argv (pure): foreground, quiet, one connection on descriptor `fd`,
 * IPv4, the guest network above, MTU 1500, DNS forwarded, the ports; scope
 * public adds --no-map-gw.  Refused for scope none (kind usage). */
int sandbox_passt_argv(const struct sandbox_net *n, const char *passt, int fd, struct msb_strv *out,
		       struct msb_err *err);

/* ---- at run time (net.c) ----------------------------------------------------- */

struct sandbox;

/* For a scope other than none: a socket pair, passt started on one end
 * (sb->passt_pid; its output in <run dir>/passt.log), the other kept in
 * sb->net_fd (> 2) for msb-vmm (sandbox_spawn_vmm passes it as descriptor 3).
 * Scope none: nothing (sb->net_fd stays 0, "none").  passt not installed: kind
 * not_found, "install passt".  Scope public/group: passt is confined
 * (scope_confine) before it runs; without the privileges for that, kind
 * system naming the scope and the ways out. */
int sandbox_net_start(struct sandbox *sb, const struct sandbox_net *n, struct msb_err *err);
/* After msb-vmm started (or failed to): msb's copy of its end is closed. */
void sandbox_net_spawned(struct sandbox *sb);
/* Before each msb-vmm spawn: with a network slot (`slot`), any earlier
 * passt is stopped and a new one started for spec->net (NULL: scope
 * public); *vmm_arg is msb-vmm's --net value ("fd:3", or "none" for scope
 * none).  Without a slot *vmm_arg is NULL and nothing starts. */
struct sandbox_spec;
int sandbox_net_prepare(struct sandbox *sb, const struct sandbox_spec *spec, bool slot,
			const char **vmm_arg, struct msb_err *err);
/* Kill and reap passt (it also ends by itself when msb-vmm's end closes). */
void sandbox_net_stop(struct sandbox *sb);

#endif
