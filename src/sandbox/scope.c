/* Network scope enforcement: resolv.conf and mountinfo parsing, passt's
 * cgroup (scope.h; the programs are in scope_bpf.c). */
#include "sandbox/scope.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

#define SCOPE_NEEDS_PRIVILEGES                                                             \
	"scope %s keeps the sandbox off loopback and private addresses with cgroup-BPF, "  \
	"which needs root (or CAP_BPF and CAP_NET_ADMIN and a writable cgroup2): run msb " \
	"as root or with those capabilities, or choose --scope any (no address filter)"

/* ---- parsing (pure) ----------------------------------------------------------- */

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

size_t scope_parse_resolv(const char *text, size_t len, struct scope_addr *out, size_t max)
{
	static const char kw[] = "nameserver";
	size_t n = 0, i = 0;
	while (i < len) {
		size_t eol = i;
		while (eol < len && text[eol] != '\n')
			eol++;
		size_t p = i;
		i = eol + 1;
		while (p < eol && blank(text[p]))
			p++;
		if (eol - p <= sizeof(kw) - 1 || memcmp(text + p, kw, sizeof(kw) - 1) != 0 ||
		    !blank(text[p + sizeof(kw) - 1]))
			continue;
		p += sizeof(kw) - 1;
		while (p < eol && blank(text[p]))
			p++;
		size_t e = p;
		while (e < eol && !blank(text[e]) && text[e] != '#' && text[e] != ';')
			e++;
		char tok[INET6_ADDRSTRLEN + 1];
		size_t tl = e - p;
		if (tl == 0 || tl >= sizeof(tok) + 32 || memchr(text + p, '\0', tl))
			continue;
		const char *pct = memchr(text + p, '%', tl); /* fe80::1%eth0 */
		if (pct)
			tl = (size_t)(pct - (text + p));
		if (tl == 0 || tl >= sizeof(tok))
			continue;
		memcpy(tok, text + p, tl);
		tok[tl] = '\0';
		struct scope_addr a = {0};
		if (inet_pton(AF_INET, tok, a.a) == 1)
			a.family = AF_INET;
		else if (inet_pton(AF_INET6, tok, a.a) == 1)
			a.family = AF_INET6;
		else
			continue;
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = out[k].family == a.family && memcmp(out[k].a, a.a, 16) == 0;
		if (dup)
			continue;
		if (n == max)
			break;
		out[n++] = a;
	}
	return n;
}

int scope_cgroup2_from_mountinfo(const char *text, size_t len, char *out, size_t outsz)
{
	size_t i = 0;
	while (i < len) {
		size_t eol = i;
		while (eol < len && text[eol] != '\n')
			eol++;
		const char *l = text + i;
		size_t ll = eol - i;
		i = eol + 1;
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPER" */
		const char *sep = NULL;
		for (size_t k = 0; k + 3 <= ll; k++)
			if (l[k] == ' ' && l[k + 1] == '-' && l[k + 2] == ' ') {
				sep = l + k;
				break;
			}
		if (!sep)
			continue;
		const char *fs = sep + 3;
		size_t fl = (size_t)(l + ll - fs);
		if (fl < 8 || memcmp(fs, "cgroup2 ", 8) != 0)
			continue;
		/* the fifth field */
		const char *f = l;
		const char *end = sep;
		for (int k = 0; k < 4 && f < end; k++) {
			const char *sp = memchr(f, ' ', (size_t)(end - f));
			f = sp ? sp + 1 : end;
		}
		const char *fe = memchr(f, ' ', (size_t)(end - f));
		if (!fe)
			fe = end;
		size_t o = 0;
		bool ok = f < fe;
		for (const char *c = f; ok && c < fe; c++) {
			char ch = *c;
			if (ch == '\\' && fe - c >= 4 && c[1] >= '0' && c[1] <= '3' &&
			    c[2] >= '0' && c[2] <= '7' && c[3] >= '0' && c[3] <= '7') {
				ch = (char)((c[1] - '0') * 64 + (c[2] - '0') * 8 + (c[3] - '0'));
				c += 3;
			}
			if (ch == '\0' || o + 1 >= outsz)
				ok = false;
			else
				out[o++] = ch;
		}
		if (!ok || out[0] != '/')
			continue;
		out[o] = '\0';
		return 0;
	}
	return -1;
}

size_t scope_host_addrs(struct scope_addr *out, size_t max, bool *more)
{
	*more = false;
	struct ifaddrs *ifa;
	if (getifaddrs(&ifa) < 0)
		return 0;
	size_t n = 0;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		struct scope_addr a = {0};
		if (!i->ifa_addr) {
			continue;
		} else if (i->ifa_addr->sa_family == AF_INET) {
			a.family = AF_INET;
			memcpy(a.a, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, 4);
			if (a.a[0] == 127)
				continue;
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			a.family = AF_INET6;
			memcpy(a.a, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16);
			if (IN6_IS_ADDR_LOOPBACK((struct in6_addr *)a.a))
				continue;
		} else {
			continue;
		}
		if (scope_in_refused_range(&a))
			continue; /* refused whatever the list says */
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = out[k].family == a.family && memcmp(out[k].a, a.a, 16) == 0;
		if (dup)
			continue;
		if (n == max) {
			*more = true;
			break;
		}
		out[n++] = a;
	}
	freeifaddrs(ifa);
	return n;
}

int scope_rules_add_port(struct scope_rules *r, uint16_t port, struct msb_err *err)
{
	for (size_t i = 0; i < r->nlo_ports; i++)
		if (r->lo_ports[i] == port)
			return 0;
	if (r->nlo_ports == SCOPE_MAX_PORTS)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "scope group allows at most %d forwarded ports in one group",
				   SCOPE_MAX_PORTS);
	r->lo_ports[r->nlo_ports++] = port;
	return 0;
}

/* ---- the cgroup --------------------------------------------------------------- */

/* /proc files report no size: read until EOF, at most `max` bytes. */
static char *read_proc(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 16384, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n == cap) {
			char *b = cap < max ? realloc(buf, cap * 2) : NULL;
			if (!b) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = b;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			buf = NULL;
		} else if (r == 0) {
			break;
		} else {
			n += (size_t)r;
		}
	}
	close(fd);
	*len = n;
	return buf;
}

int scope_cgroup2_root(char *out, size_t outsz, struct msb_err *err)
{
	size_t len = 0;
	_cleanup_free_ char *mi = read_proc("/proc/self/mountinfo", 16u << 20, &len);
	if (!mi)
		return msb_err_sys(err, "reading /proc/self/mountinfo");
	if (scope_cgroup2_from_mountinfo(mi, len, out, outsz) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0,
				   "no cgroup2 file system is mounted (mount -t cgroup2 none "
				   "/sys/fs/cgroup)");
	return 0;
}

static bool pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

void scope_prune_stale(const char *cg2root)
{
	char dir[4096];
	if (snprintf(dir, sizeof(dir), "%s/msb", cg2root) >= (int)sizeof(dir))
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		if (strncmp(de->d_name, "passt-", 6) != 0)
			continue;
		long pid = strtol(de->d_name + 6, &end, 10);
		if (*end || pid <= 0 || pid_alive((pid_t)pid))
			continue;
		/* rmdir refuses a cgroup that still has processes */
		unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
	}
	closedir(d);
}

static int cg_path(char *out, size_t sz, pid_t pid, struct msb_err *err)
{
	char root[4096];
	if (scope_cgroup2_root(root, sizeof(root), err) < 0)
		return -1;
	if (snprintf(out, sz, "%s/msb/passt-%d", root, (int)pid) >= (int)sz)
		return msb_err_set(err, MSB_EK_SYSTEM, ENAMETOOLONG, "cgroup path too long");
	return 0;
}

static int confine(pid_t pid, const struct scope_rules *r, char *path, size_t psz,
		   struct msb_err *err)
{
	char root[4096];
	if (scope_cgroup2_root(root, sizeof(root), err) < 0)
		return -1;
	if (snprintf(path, psz, "%s/msb", root) >= (int)psz)
		return msb_err_set(err, MSB_EK_SYSTEM, ENAMETOOLONG, "cgroup path too long");
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating %s", path);
	scope_prune_stale(root);
	if (snprintf(path, psz, "%s/msb/passt-%d", root, (int)pid) >= (int)psz)
		return msb_err_set(err, MSB_EK_SYSTEM, ENAMETOOLONG, "cgroup path too long");
	/* Left by a crashed msb whose passt had this pid: our child is not in it
	 * yet, so an empty one is stale (rmdir refuses a cgroup in use). */
	if (mkdir(path, 0755) < 0 &&
	    (errno != EEXIST || rmdir(path) < 0 || mkdir(path, 0755) < 0)) {
		int e = errno;
		path[0] = '\0'; /* not ours to remove */
		errno = e;
		return msb_err_sys(err, "creating a cgroup for passt %d", (int)pid);
	}
	int cfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cfd < 0)
		return msb_err_sys(err, "opening %s", path);
	struct scope_rules *rr = malloc(sizeof(*rr));
	if (!rr) {
		close(cfd);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	*rr = *r;
	rr->peer_map = scope_peer_map_create(err);
	if (rr->peer_map < 0) {
		free(rr);
		close(cfd);
		return -1;
	}
	for (int h = 0; h < SCOPE_NHOOKS; h++) {
		int pfd = scope_prog_load(rr, (enum scope_hook)h, err);
		if (pfd < 0) {
			close(rr->peer_map);
			free(rr);
			close(cfd);
			return -1;
		}
		int rc = scope_attach(cfd, pfd, (enum scope_hook)h);
		int e = errno;
		close(pfd);
		if (rc < 0) {
			close(rr->peer_map);
			free(rr);
			close(cfd);
			errno = e;
			return msb_err_sys(err, "attaching the scope filter to %s", path);
		}
	}
	close(rr->peer_map); /* the programs hold it */
	free(rr);
	close(cfd);
	char procs[4200], num[24];
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
	int n = snprintf(num, sizeof(num), "%d", (int)pid);
	int fd = open(procs, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", procs);
	ssize_t w = write(fd, num, (size_t)n);
	int e = errno;
	close(fd);
	if (w != n) {
		errno = w < 0 ? e : EIO;
		return msb_err_sys(err, "moving passt into %s", path);
	}
	return 0;
}

int scope_confine(pid_t pid, const struct scope_rules *r, const char *scope_name,
		  struct msb_err *err)
{
	char path[4096] = "";
	if (confine(pid, r, path, sizeof(path), err) == 0)
		return 0;
	if (path[0] && strstr(path, "/msb/passt-"))
		rmdir(path);
	if (err->errnum != EPERM && err->errnum != EACCES)
		return msb_err_wrap(err,
				    "confining passt for scope %s (--scope any has no "
				    "address filter)",
				    scope_name);
	return msb_err_wrap(err, SCOPE_NEEDS_PRIVILEGES, scope_name);
}

/* CapEff of /proc/self/status: the effective capabilities, 0 when unknown. */
static uint64_t effective_caps(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return 0;
	char line[256];
	unsigned long long caps = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	return caps;
}

int scope_check_privileges(const char *scope_name, struct msb_err *err)
{
	if (geteuid() == 0)
		return 0;
	uint64_t caps = effective_caps();
	bool net_admin = caps & (1ull << 12), sys_admin = caps & (1ull << 21),
	     bpf = caps & (1ull << 39);
	if (net_admin && (bpf || sys_admin))
		return 0;
	return msb_err_set(err, MSB_EK_SYSTEM, 0, SCOPE_NEEDS_PRIVILEGES, scope_name);
}

void scope_release(pid_t pid)
{
	char path[4096];
	struct msb_err ignored = {0};
	if (cg_path(path, sizeof(path), pid, &ignored) < 0)
		return;
	/* A reaped process can take a moment to leave the cgroup. */
	for (int i = 0; i < 100; i++) {
		if (rmdir(path) == 0 || errno != EBUSY)
			return;
		nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
}
