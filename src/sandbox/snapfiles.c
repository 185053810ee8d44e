/* The file side of snapshots: where they live, the base snapshot's key, copies
 * of writable layers (reflink, else sparse), and msb-vmm's control socket. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/paths.h"
#include "common/pvm.h"
#include "oci/digest.h"
#include "sandbox/net.h"
#include "sandbox/snapshot.h"
#include "sandbox/vm_int.h"

char *sandbox_base_key_text(const struct sandbox_file_id ids[3], const char *base_cmdline,
			    unsigned cpus, unsigned memory_mib)
{
	static const char *const what[3] = {"kernel", "initrd", "vmm"};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	fprintf(f, "%s\n", SANDBOX_BASE_LAYOUT);
	for (int i = 0; i < 3; i++)
		fprintf(f, "%s size=%llu mtime_ns=%llu ino=%llu dev=%llu\n", what[i],
			(unsigned long long)ids[i].size, (unsigned long long)ids[i].mtime_ns,
			(unsigned long long)ids[i].ino, (unsigned long long)ids[i].dev);
	fprintf(f, "cmdline=%s\ncpus=%u\nmemory_mib=%u\n", base_cmdline ? base_cmdline : "", cpus,
		memory_mib);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* A snapshot key: the first 16 hex digits of sha256(text); text NULL: out of memory. */
static int key_of_text(const char *text, char out[17], struct msb_err *err)
{
	if (!text)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	char dig[OCI_DIGEST_MAX + 1];
	oci_sha256_buf(text, strlen(text), dig);
	const char *hex = strchr(dig, ':');
	snprintf(out, 17, "%.16s", hex ? hex + 1 : dig);
	return 0;
}

int sandbox_base_key(const struct sandbox_parts *p, unsigned cpus, unsigned memory_mib,
		     char out[17], struct msb_err *err)
{
	const char *files[3] = {p->kernel, p->initrd, p->vmm};
	struct sandbox_file_id ids[3];
	for (int i = 0; i < 3; i++) {
		struct stat st;
		if (stat(files[i], &st) < 0)
			return msb_err_sys(err, "stat %s", files[i]);
		ids[i] = (struct sandbox_file_id){
			.size = (uint64_t)st.st_size,
			.mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ull +
				    (uint64_t)st.st_mtim.tv_nsec,
			.ino = (uint64_t)st.st_ino,
			.dev = (uint64_t)st.st_dev,
		};
	}
	/* The command line msb-vmm will boot with: on a PVM host it appends the
	 * workarounds, and a base made for one kind of host is wrong on the other. */
	struct msb_pvm pvm;
	if (msb_pvm_host(&pvm, err) < 0)
		return -1;
	const char *base = p->base_cmdline ? p->base_cmdline : "";
	_cleanup_free_ char *eff = NULL;
	const char *extra = msb_pvm_cmdline_extra(&pvm, base);
	if (extra && asprintf(&eff, "%s%s%s", base, *base ? " " : "", extra) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	_cleanup_free_ char *text =
		sandbox_base_key_text(ids, eff ? eff : p->base_cmdline, cpus, memory_mib);
	return key_of_text(text, out, err);
}

static char *home_sub(const char *sub, struct msb_err *err)
{
	char home[4096];
	if (msb_home(home, sizeof(home), err) < 0)
		return NULL;
	char *p = NULL;
	if (asprintf(&p, "%s/snapshots/%s", home, sub) < 0) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return NULL;
	}
	return p;
}

/* $env when set, else the home's snapshots/<sub>. */
static char *env_or_home_sub(const char *env, const char *sub, struct msb_err *err)
{
	const char *e = getenv(env);
	if (e && *e) {
		char *p = strdup(e);
		if (!p)
			msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
		return p;
	}
	return home_sub(sub, err);
}

char *sandbox_base_root(struct msb_err *err)
{
	return env_or_home_sub("MSB_BASE_SNAPSHOTS", "base", err);
}

char *sandbox_user_root(struct msb_err *err)
{
	return home_sub("user", err);
}

char *sandbox_warm_root(struct msb_err *err)
{
	return env_or_home_sub("MSB_WARM_SNAPSHOTS", "warm", err);
}

size_t sandbox_warm_programs(const char *run, const char *const *entrypoint, const char *const *cmd,
			     const char *out[], size_t max)
{
	const char *cand[3] = {run,
			       entrypoint && entrypoint[0] ? entrypoint[0]
			       : cmd			   ? cmd[0]
							   : NULL,
			       "/bin/sh"};
	size_t n = 0;
	for (size_t i = 0; i < 3 && n < max; i++) {
		const char *c = cand[i];
		if (!c || !agent_valid_warm_name(c, strlen(c)))
			continue;
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= strcmp(out[j], c) == 0;
		if (!dup)
			out[n++] = c;
	}
	return n;
}

/* ---- the warm snapshot's key ------------------------------------------------------ */

char *sandbox_warm_key_text(const char *base_key, const char *digest, const char *rootfs,
			    const struct sandbox_file_id *id)
{
	char *t = NULL;
	if (asprintf(&t,
		     "%s\neth0=%s\nbase=%s\nimage=%s\nrootfs=%s size=%llu mtime_ns=%llu ino=%llu "
		     "dev=%llu\n",
		     SANDBOX_WARM_LAYOUT, SANDBOX_NET_SETUP, base_key, digest ? digest : "", rootfs,
		     (unsigned long long)id->size, (unsigned long long)id->mtime_ns,
		     (unsigned long long)id->ino, (unsigned long long)id->dev) < 0)
		return NULL;
	return t;
}

int sandbox_warm_key(const char *base_key, const char *digest, const char *rootfs, char out[17],
		     struct msb_err *err)
{
	struct stat st;
	if (stat(rootfs, &st) < 0)
		return msb_err_sys(err, "stat %s", rootfs);
	struct sandbox_file_id id = {
		.size = (uint64_t)st.st_size,
		.mtime_ns =
			(uint64_t)st.st_mtim.tv_sec * 1000000000ull + (uint64_t)st.st_mtim.tv_nsec,
		.ino = (uint64_t)st.st_ino,
		.dev = (uint64_t)st.st_dev,
	};
	_cleanup_free_ char *text = sandbox_warm_key_text(base_key, digest, rootfs, &id);
	return key_of_text(text, out, err);
}

/* ---- copies ---------------------------------------------------------------------- */

static int sparse_copy(int in, int out, off_t size, struct msb_err *err)
{
	off_t off = 0;
	while (off < size) {
		off_t data = lseek(in, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* only a hole is left */
		if (data < 0)
			return msb_err_sys(err, "SEEK_DATA");
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return msb_err_sys(err, "SEEK_HOLE");
		for (off_t pos = data; pos < hole;) {
			loff_t ip = pos, op = pos;
			ssize_t n = copy_file_range(in, &ip, out, &op, (size_t)(hole - pos), 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return msb_err_sys(err, "copying data");
			if (n == 0)
				break; /* the source shrank under us */
			pos += n;
		}
		off = hole;
	}
	if (ftruncate(out, size) < 0)
		return msb_err_sys(err, "sizing the copy");
	return 0;
}

int sandbox_copy_file(const char *src, const char *dst, const char **how, struct msb_err *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return msb_err_sys(err, "opening %s", src);
	struct stat st;
	if (fstat(in, &st) < 0)
		return msb_err_sys(err, "stat %s", src);
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return msb_err_sys(err, "creating %s", dst);
	if (ioctl(out, FICLONE, in) == 0) {
		*how = "reflink";
	} else {
		*how = "sparse copy";
		if (sparse_copy(in, out, st.st_size, err) < 0) {
			unlink(dst);
			return msb_err_wrap(err, "copying %s to %s", src, dst);
		}
	}
	if (fsync(out) < 0) {
		msb_err_sys(err, "syncing %s", dst);
		unlink(dst);
		return -1;
	}
	return 0;
}

/* ---- control socket ------------------------------------------------------------- */

int sandbox_vmm_reply_parse(const char *reply, struct msb_err *err)
{
	if (strncmp(reply, "OK", 2) == 0 && (reply[2] == '\0' || reply[2] == ' '))
		return 0;
	if (strncmp(reply, "ERR", 3) == 0)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "msb-vmm: %s",
				   reply[3] == ' ' ? reply + 4 : "(no message)");
	return msb_err_set(err, MSB_EK_SYSTEM, 0, "msb-vmm answered '%.80s' on its control socket",
			   reply);
}

int sandbox_vmm_control(const char *sock, const char *line, char *reply, size_t reply_len,
			int timeout_ms, struct msb_err *err)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(sock) >= sizeof(a.sun_path))
		return msb_err_set(err, MSB_EK_SYSTEM, ENAMETOOLONG, "socket path %s", sock);
	memcpy(a.sun_path, sock, strlen(sock) + 1);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return msb_err_sys(err, "socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_STATE : MSB_EK_SYSTEM, errno,
				   "connecting to msb-vmm's control socket %s", sock);
	char msg[4200];
	int n = snprintf(msg, sizeof(msg), "%s\n", line);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "control line too long");
	if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) != n)
		return msb_err_sys(err, "writing to msb-vmm's control socket");
	char buf[1024];
	size_t got = 0;
	uint64_t deadline = sandbox_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t now = sandbox_now_ms();
		if (now >= deadline)
			return msb_err_set(err, MSB_EK_TIMEOUT, 0,
					   "msb-vmm did not answer '%s' within %d s", line,
					   timeout_ms / 1000);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, (int)(deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return msb_err_sys(err, "poll");
		if (r == 0)
			continue;
		ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return msb_err_sys(err, "reading msb-vmm's control socket");
		if (k == 0)
			return msb_err_set(err, MSB_EK_SYSTEM, 0,
					   "msb-vmm closed its control socket without answering "
					   "'%s'",
					   line);
		got += (size_t)k;
		buf[got] = '\0';
		char *nl = strchr(buf, '\n');
		if (nl || got == sizeof(buf) - 1) {
			if (nl)
				*nl = '\0';
			if (reply && reply_len)
				snprintf(reply, reply_len, "%s", buf);
			return sandbox_vmm_reply_parse(buf, err);
		}
	}
}

/* ---- user snapshots -------------------------------------------------------------- */

int sandbox_user_snapshot_open(const char *name, char **dir, struct sandbox_snapmeta *m,
			       struct msb_err *err)
{
	*dir = NULL;
	if (sandbox_snapshot_name_check(name, err) < 0)
		return -1;
	_cleanup_free_ char *root = sandbox_user_root(err);
	if (!root)
		return -1;
	char *d = NULL;
	if (asprintf(&d, "%s/%s", root, name) < 0)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	struct stat st;
	if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(d);
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "no snapshot '%s'; `msb snapshot ls` lists them", name);
	}
	_cleanup_free_ char *mp = NULL;
	if (asprintf(&mp, "%s/meta", d) < 0) {
		free(d);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
	}
	if (sandbox_snapmeta_read(mp, m, err) < 0) {
		free(d);
		return msb_err_wrap(err, "snapshot '%s' (remove it with `msb snapshot rm %s`)",
				    name, name);
	}
	*dir = d;
	return 0;
}
