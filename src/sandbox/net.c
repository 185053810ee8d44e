/* A sandbox's network: -p parsing, passt's command line and its process
 * (net.h; docs/sandbox.md "Networking"). */
#include "sandbox/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "project/install.h"
#include "project/pairs.h"
#include "sandbox/child.h"
#include "sandbox/sandbox.h"
#include "sandbox/scope.h"
#include "sandbox/vm_int.h"

/* ---- parsing (pure) -------------------------------------------------------------- */

/* A port that can be forwarded: 1..65535. */
static int port_num(const char *s, size_t n, uint16_t *out)
{
	return msb_port_parse(s, n, out) < 0 || *out == 0 ? -1 : 0;
}

int sandbox_port_parse(const char *s, struct sandbox_port *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t len = strlen(s);
	const char *slash = strchr(s, '/');
	size_t body = slash ? (size_t)(slash - s) : len;
	bool ok = true;
	if (slash) {
		if (strcmp(slash + 1, "udp") == 0)
			out->udp = true;
		else if (strcmp(slash + 1, "tcp") != 0)
			ok = false;
	}
	/* Fields separated by ':' within body: 1 (PORT), 2 (HOST:GUEST) or 3 (IP:HOST:GUEST). */
	const char *f[3];
	size_t fl[3], nf = 0;
	const char *start = s;
	for (size_t i = 0; ok && i <= body; i++) {
		if (i == body || s[i] == ':') {
			if (nf == 3) {
				ok = false;
				break;
			}
			f[nf] = start;
			fl[nf++] = (size_t)(s + i - start);
			start = s + i + 1;
		}
	}
	if (ok && nf == 1) {
		ok = port_num(f[0], fl[0], &out->host) == 0;
		out->guest = out->host;
	} else if (ok && nf >= 2) {
		size_t k = nf - 2;
		ok = port_num(f[k], fl[k], &out->host) == 0 &&
		     port_num(f[k + 1], fl[k + 1], &out->guest) == 0;
		if (ok && nf == 3) {
			struct in_addr a;
			ok = fl[0] > 0 && fl[0] < sizeof(out->host_ip);
			if (ok) {
				memcpy(out->host_ip, f[0], fl[0]);
				out->host_ip[fl[0]] = '\0';
				ok = inet_pton(AF_INET, out->host_ip, &a) == 1;
			}
		}
	} else {
		ok = false;
	}
	if (!ok) {
		memset(out, 0, sizeof(*out));
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"'%.120s' is not a port mapping; write HOST_PORT:GUEST_PORT, "
			"HOST_IP:HOST_PORT:GUEST_PORT or PORT (1-65535), optionally "
			"followed by /tcp or /udp, e.g. 8080:80 or 127.0.0.1:8080:80/tcp",
			s);
	}
	return 0;
}

int sandbox_net_add_port(struct sandbox_net *n, const struct sandbox_port *p, struct msb_err *err)
{
	struct sandbox_port *v = realloc(n->ports, (n->nports + 1) * sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	v[n->nports++] = *p;
	n->ports = v;
	return 0;
}

int sandbox_net_from_sandboxfile(const struct msb_sandbox *sb, struct sandbox_net *out,
				 struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	out->scope = sb->scope;
	for (size_t i = 0; i < sb->nports; i++) {
		struct sandbox_port p = {.host = sb->ports[i].host, .guest = sb->ports[i].guest};
		if (!p.host || !p.guest) {
			sandbox_net_clear(out);
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "port %u:%u: port 0 cannot be forwarded", p.host,
					   p.guest);
		}
		if (sandbox_net_add_port(out, &p, err) < 0) {
			sandbox_net_clear(out);
			return -1;
		}
	}
	return 0;
}

void sandbox_net_clear(struct sandbox_net *n)
{
	free(n->ports);
	free(n->group_ports);
	memset(n, 0, sizeof(*n));
}

static int add_group_port(struct sandbox_net *n, uint16_t port, struct msb_err *err)
{
	for (size_t i = 0; i < n->ngroup_ports; i++)
		if (n->group_ports[i] == port)
			return 0;
	uint16_t *v = realloc(n->group_ports, (n->ngroup_ports + 1) * sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	v[n->ngroup_ports++] = port;
	n->group_ports = v;
	return 0;
}

int sandbox_net_add_group(struct sandbox_net *n, const struct msb_sandboxfile *sf,
			  struct msb_err *err)
{
	if (n->scope != MSB_SCOPE_GROUP || !sf)
		return 0;
	for (size_t i = 0; i < sf->nsandboxes; i++) {
		const struct msb_sandbox *s = &sf->sandboxes[i];
		for (size_t k = 0; s->scope == MSB_SCOPE_GROUP && k < s->nports; k++)
			if (s->ports[k].host && add_group_port(n, s->ports[k].host, err) < 0)
				return -1;
	}
	return 0;
}

static int push_fmt(struct msb_strv *v, struct msb_err *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int push_fmt(struct msb_strv *v, struct msb_err *err, const char *fmt, ...)
{
	char buf[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return msb_strv_push(v, buf, err);
}

int sandbox_passt_argv(const struct sandbox_net *n, const char *passt, int fd, struct msb_strv *out,
		       struct msb_err *err)
{
	if (n->scope == MSB_SCOPE_NONE)
		return msb_err_set(err, MSB_EK_USAGE, 0, "scope none has no network to start");
	struct msb_strv s = {0};
	static const char *const fixed[] = {"-f",
					    "-q",
					    "-4",
					    "-a",
					    SANDBOX_NET_GUEST,
					    "-n",
					    MSB_STRINGIFY(SANDBOX_NET_PREFIX),
					    "-g",
					    SANDBOX_NET_GATEWAY,
					    "-m",
					    "1500",
					    "--dns-forward",
					    SANDBOX_NET_DNS};
	int r = msb_strv_push(&s, passt, err);
	r = r < 0 ? r : msb_strv_push(&s, "-F", err);
	r = r < 0 ? r : push_fmt(&s, err, "%d", fd);
	for (size_t i = 0; r == 0 && i < sizeof(fixed) / sizeof(fixed[0]); i++)
		r = msb_strv_push(&s, fixed[i], err);
	/* public: the gateway is no way into the host's loopback (group: the
	 * scope filter lets it through to the group's ports only). */
	if (r == 0 && n->scope == MSB_SCOPE_PUBLIC)
		r = msb_strv_push(&s, "--no-map-gw", err);
	for (size_t i = 0; r == 0 && i < n->nports; i++) {
		const struct sandbox_port *p = &n->ports[i];
		r = msb_strv_push(&s, p->udp ? "-u" : "-t", err);
		r = r < 0 ? r
			  : push_fmt(&s, err, "%s%s%u:%u", p->host_ip, p->host_ip[0] ? "/" : "",
				     p->host, p->guest);
	}
	if (r < 0) {
		msb_strv_clear(&s);
		return -1;
	}
	*out = s;
	return 0;
}

/* ---- the passt process ------------------------------------------------------------ */

/* $MSB_PASST, else passt on PATH; NULL when there is none. */
static char *find_passt(void)
{
	const char *e = getenv("MSB_PASST");
	if (e && *e)
		return access(e, X_OK) == 0 ? strdup(e) : NULL;
	if (!getenv("PATH")) /* started with no environment: where Debian puts it */
		return access("/usr/bin/passt", X_OK) == 0 ? strdup("/usr/bin/passt") : NULL;
	return msb_which("passt");
}

/* The scope filter's rules for n: the host's name servers; for group the
 * group's host ports and the sandbox's own. */
static int scope_rules_for(const struct sandbox_net *n, struct scope_rules *r, struct msb_err *err)
{
	memset(r, 0, sizeof(*r));
	_cleanup_free_ char *rc = NULL;
	size_t len = 0;
	struct msb_err ignored = {0};
	/* passt reads the same file for --dns-forward; none: no exception */
	if (msb_read_file("/etc/resolv.conf", 1u << 20, MSB_EK_USAGE, &rc, &len, &ignored) == 0)
		r->nns = scope_parse_resolv(rc, len, r->ns, SCOPE_MAX_NS);
	bool more = false;
	r->nhost = scope_host_addrs(r->host, SCOPE_MAX_HOST, &more);
	if (more)
		return msb_err_set(
			err, MSB_EK_SYSTEM, 0,
			"this host has more than %d public addresses on its interfaces "
			"and scope %s refuses each of them by address (the filter holds "
			"%d): choose --scope any, or run the sandbox on a host with fewer",
			SCOPE_MAX_HOST, msb_scope_name(n->scope), SCOPE_MAX_HOST);
	if (n->scope != MSB_SCOPE_GROUP)
		return 0;
	for (size_t i = 0; i < n->ngroup_ports; i++)
		if (scope_rules_add_port(r, n->group_ports[i], err) < 0)
			return -1;
	for (size_t i = 0; i < n->nports; i++)
		if (scope_rules_add_port(r, n->ports[i].host, err) < 0)
			return -1;
	return 0;
}

int sandbox_net_start(struct sandbox *sb, const struct sandbox_net *n, struct msb_err *err)
{
	sb->net_fd = 0;
	sb->passt_pid = 0;
	if (n->scope == MSB_SCOPE_NONE)
		return 0;
	_cleanup_free_ char *passt = find_passt();
	if (!passt)
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "passt (user-mode networking) is not installed: install passt "
				   "(apt install passt), set MSB_PASST, or run with --scope none");
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return msb_err_sys(err, "socketpair for the network");
	/* 0 means "none" in struct sandbox: keep msb's end above stdio. */
	if (sv[0] < 3) {
		int hi = fcntl(sv[0], F_DUPFD_CLOEXEC, 3);
		close(sv[0]);
		sv[0] = hi;
		if (hi < 0) {
			close(sv[1]);
			return msb_err_sys(err, "fcntl");
		}
	}
	/* passt's end becomes its descriptor 3. */
	struct msb_strv argv = {0};
	if (sandbox_passt_argv(n, passt, 3, &argv, err) < 0) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	static __thread struct scope_rules rules;
	bool filter = n->scope == MSB_SCOPE_PUBLIC || n->scope == MSB_SCOPE_GROUP;
	int gate[2] = {-1, -1};
	_cleanup_free_ char *log = sandbox_path_join(sb->run_dir, "passt.log");
	int lfd = log ? open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	if (lfd < 0) {
		msb_err_sys(err, "creating passt's log in %s", sb->run_dir);
		goto fail;
	}
	/* public/group: passt waits on `gate` until msb has moved it into its
	 * filtered cgroup, so it never runs a syscall outside. */
	if (filter && (scope_rules_for(n, &rules, err) < 0 ||
		       (pipe2(gate, O_CLOEXEC) < 0 && msb_err_sys(err, "pipe") < 0)))
		goto fail;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		msb_err_sys(err, "fork");
		goto fail;
	}
	if (pid == 0) { /* like msb-vmm; when passt drops privileges, PDEATHSIG no longer
			 * reaches it: it ends when msb-vmm's end of the pair closes */
		if (filter) {
			char go = 0;
			close(gate[1]);
			while (read(gate[0], &go, 1) < 0 && errno == EINTR)
				;
			if (go != 'g')
				_exit(1);
		}
		sandbox_child_exec(parent, lfd, lfd, sv[1], argv.v);
	}
	if (filter) {
		close(gate[0]);
		gate[0] = -1;
		if (scope_confine(pid, &rules, msb_scope_name(n->scope), err) < 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			goto fail;
		}
		if (write(gate[1], "g", 1) != 1) {
			msb_err_sys(err, "starting passt");
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			scope_release(pid);
			goto fail;
		}
		close(gate[1]);
	}
	close(lfd);
	close(sv[1]);
	msb_strv_clear(&argv);
	sb->passt_pid = pid;
	sb->net_fd = sv[0];
	msb_info("sandbox %s: passt pid %d, scope %s, %zu port(s)", sb->name, (int)pid,
		 msb_scope_name(n->scope), n->nports);
	return 0;
fail:
	if (lfd >= 0)
		close(lfd);
	for (int i = 0; i < 2; i++)
		if (gate[i] >= 0)
			close(gate[i]);
	close(sv[0]);
	close(sv[1]);
	msb_strv_clear(&argv);
	return -1;
}

void sandbox_net_spawned(struct sandbox *sb)
{
	if (sb->net_fd > 0)
		close(sb->net_fd);
	sb->net_fd = 0;
}

void sandbox_net_stop(struct sandbox *sb)
{
	sandbox_net_spawned(sb);
	if (sb->passt_pid > 0) {
		kill(sb->passt_pid, SIGKILL);
		while (waitpid(sb->passt_pid, NULL, 0) < 0 && errno == EINTR)
			;
		scope_release(sb->passt_pid); /* its filtered cgroup, if any */
	}
	sb->passt_pid = 0;
}

int sandbox_net_prepare(struct sandbox *sb, const struct sandbox_spec *spec, bool slot,
			const char **vmm_arg, struct msb_err *err)
{
	*vmm_arg = NULL;
	sandbox_net_stop(sb);
	sb->net_slot = slot;
	if (!slot)
		return 0;
	const struct sandbox_net def = {.scope = MSB_SCOPE_DEFAULT};
	if (sandbox_net_start(sb, spec->net ? spec->net : &def, err) < 0)
		return msb_err_wrap(err, "starting the sandbox's network");
	*vmm_arg = sb->net_fd > 0 ? "fd:3" : "none";
	return 0;
}
