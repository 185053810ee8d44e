#include "init/exec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

const char *exec_base_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	NULL, /* exec_base_env_init(): up to EXEC_AVX_ENV_MAX entries */
	NULL,
	NULL,
	NULL,
};

#ifndef ARCH_GET_XCOMP_SUPP
#define ARCH_GET_XCOMP_SUPP 0x1021
#endif
#define XSTATE_AVX_ALL 0xe4u /* YMM upper halves, AVX-512 opmask, ZMM upper and 16-31 */

/* glibc 2.33 and later; older ones ignore the names they do not know. */
#define NO_AVX_TUNABLES                                                                      \
	"GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ," \
	"-AVX512CD,-AVX_Fast_Unaligned_Load"
/* OpenSSL (libcrypto's own CPU dispatch, also inside node and python): masks
 * of the CPUID words it keeps.  First word, CPUID.1 ECX in the high half: AVX
 * (bit 28), F16C (29), FMA (12), XOP (11).  Second word, CPUID.7 EBX in the low
 * half: AVX2 (5), AVX512F/DQ/IFMA/PF/ER/CD/BW/VL (16, 17, 21, 26-28, 30, 31);
 * ECX in the high half: VBMI (1), VBMI2 (6), VAES (9), VPCLMULQDQ (10), VNNI
 * (11), BITALG (12), VPOPCNTDQ (14).  Checked with `openssl info -cpusettings`. */
#define NO_AVX_OPENSSL "OPENSSL_ia32cap=~0x3000180000000000:~0x00005e42dc230020"
/* Go's runtime (memmove, memclr, crypto) reads cpu.* from GODEBUG; these two
 * names exist in every Go release that uses AVX.  The AVX-512 names are newer
 * and an older runtime prints a warning for a name it does not know. */
#define NO_AVX_GODEBUG "GODEBUG=cpu.avx=off,cpu.avx2=off"

size_t exec_avx_env(uint64_t xcr0, uint64_t kernel_xstate, const char *out[EXEC_AVX_ENV_MAX])
{
	if (!(xcr0 & ~kernel_xstate & XSTATE_AVX_ALL))
		return 0;
	out[0] = NO_AVX_TUNABLES;
	out[1] = NO_AVX_OPENSSL;
	out[2] = NO_AVX_GODEBUG;
	return 3;
}

const char *exec_base_env_init(void)
{
	/* Under PVM the guest kernel runs emulated and cannot XSAVE, so it boots
	 * with noxsave and saves only x87/SSE state; user space still finds AVX
	 * and AVX-512 enabled in XCR0 (the host's).  glibc then copies with
	 * AVX/EVEX registers, and a task switch between a load and its store hands
	 * the next task another task's register contents: freshly started
	 * busybox processes died in __ctype_init on garbage TLS pointers.  No
	 * kernel-side fix exists on PVM (docs/agent-protocol.md, "AVX state"). */
	static char summary[512];
	uint32_t a, b, c, d;
	__asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
	if (!(c & (1u << 27))) /* OSXSAVE: no XGETBV, no AVX */
		return NULL;
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	uint64_t xcr0 = (uint64_t)hi << 32 | lo, supported = 0;
	if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_SUPP, &supported) < 0)
		return NULL; /* a kernel before 5.16: cannot tell */
	const char *add[EXEC_AVX_ENV_MAX];
	size_t n = exec_avx_env(xcr0, supported, add), used = 0;
	if (!n)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		exec_base_env[2 + i] = add[i];
		int w = snprintf(summary + used, sizeof(summary) - used, "%s%s", i ? " " : "",
				 add[i]);
		if (w > 0 && (size_t)w < sizeof(summary) - used)
			used += (size_t)w;
	}
	return summary;
}

static size_t name_len(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? (size_t)(eq - kv) : strlen(kv);
}

char **exec_merge_env(const char *const *base, char *const *over, size_t nover)
{
	size_t nbase = 0;
	while (base[nbase])
		nbase++;
	char **env = calloc(nbase + nover + 1, sizeof(*env));
	if (!env)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < nbase; i++)
		env[n++] = (char *)base[i];
	for (size_t j = 0; j < nover; j++) {
		size_t len = name_len(over[j]);
		size_t i;
		for (i = 0; i < n; i++)
			if (name_len(env[i]) == len && strncmp(env[i], over[j], len) == 0)
				break;
		env[i] = over[j];
		if (i == n)
			n++;
	}
	env[n] = NULL;
	return env;
}

/* What the child reports through the status pipe when it cannot exec. */
struct child_failure {
	int stage; /* 1 chdir, 2 exec, 3 setup */
	int errnum;
};

__attribute__((noreturn)) static void child_fail(int fd, int stage)
{
	struct child_failure f = {stage, errno};
	ssize_t w = write(fd, &f, sizeof(f));
	(void)w; /* the parent sees a short read as a failure either way */
	_exit(127);
}

/* Runs in the child after vfork: its own descriptors, signal state and cwd,
 * then exec or _exit; it writes nothing but its own frame.  fds[i] becomes
 * descriptor i; they are first lifted above nfds so that no dup2() clobbers a
 * source still needed. */
__attribute__((noreturn)) static void child(const struct agent_exec_req *req, const char *path,
					    int lookup_errno, char **env, const int *fds, int nfds,
					    bool ctty, int status_fd)
{
	sigset_t none;
	sigemptyset(&none);
	/* The server blocks SIGCHLD for its signalfd and ignores SIGPIPE (its
	 * only ignored signal; execve() resets caught ones by itself); a command
	 * expects neither.  One call, not one per signal: every syscall is guest
	 * kernel work, which is slow where it is emulated (PVM). */
	if (signal(SIGPIPE, SIG_DFL) == SIG_ERR || sigprocmask(SIG_SETMASK, &none, NULL) < 0 ||
	    setsid() < 0)
		child_fail(status_fd, 3);
	int lifted[EXEC_MAX_FDS];
	for (int i = 0; i < nfds; i++)
		if ((lifted[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, nfds)) < 0)
			child_fail(status_fd, 3);
	for (int i = 0; i < nfds; i++)
		if (dup2(lifted[i], i) < 0)
			child_fail(status_fd, 3);
	/* The session's controlling terminal: job control, Ctrl-C, SIGWINCH. */
	if (ctty && ioctl(0, TIOCSCTTY, 0) < 0)
		child_fail(status_fd, 3);
	if (chdir(req->cwd ? req->cwd : "/") < 0)
		child_fail(status_fd, 1);
	if (!path) {
		errno = lookup_errno;
		child_fail(status_fd, 2);
	}
	execve(path, req->argv, env);
	child_fail(status_fd, 2);
}

static const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; env[i]; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return env[i] + n + 1;
	return NULL;
}

/* execvp()'s lookup, done in the parent with the command's own PATH, so the
 * child needs no `environ` of its own.  NULL with errno when not found. */
char *exec_find_program(const char *name, char *const *env)
{
	if (strchr(name, '/'))
		return strdup(name);
	const char *path = env_get(env, "PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	int saw_eacces = 0;
	size_t nl = strlen(name);
	for (const char *p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dl = (size_t)(end - p);
		char *cand = malloc(dl + nl + 2);
		if (!cand)
			return NULL;
		memcpy(cand, p, dl);
		cand[dl] = '/';
		memcpy(cand + dl + 1, name, nl + 1);
		if (dl == 0)
			memmove(cand, cand + 1, nl + 1); /* empty entry: the cwd */
		if (access(cand, X_OK) == 0)
			return cand;
		saw_eacces |= errno == EACCES;
		free(cand);
		if (!*end)
			break;
		p = end;
	}
	errno = saw_eacces ? EACCES : ENOENT;
	return NULL;
}

struct child_args {
	const struct agent_exec_req *req;
	const char *path;
	int lookup_errno;
	char **env;
	const int *fds;
	int nfds;
	bool ctty;
	int status_fd;
};

/* Its own frame, not inlined: after vfork the child runs on the parent's
 * stack below this frame, and nothing of exec_spawn_fds() lives across the
 * call in a register the child could clobber. */
__attribute__((noinline)) static pid_t start_child(const struct child_args *a)
{
	pid_t pid = vfork();
	if (pid == 0)
		child(a->req, a->path, a->lookup_errno, a->env, a->fds, a->nfds, a->ctty,
		      a->status_fd);
	return pid;
}

/* vfork: the child borrows msb-init's memory until its execve(), so no page
 * table is copied and no page of msb-init is made copy-on-write, which is
 * much of a command's start where guest kernel code is slow (PVM).  child()
 * writes only its own stack frame and descriptors, then execs or _exits.
 * (An earlier vfork try lost commands to SIGSEGV in the PVM guest: the AVX
 * defect, docs/agent-protocol.md "Concurrent starts", which commands are now
 * kept clear of.) */
int exec_spawn_fds(const struct agent_exec_req *req, const int *fds, int nfds, bool ctty,
		   pid_t *pid_out, uint32_t *wire_err, struct msb_err *err)
{
	int st[2] = {-1, -1};
	_cleanup_free_ char **env = exec_merge_env(exec_base_env, req->env, req->envc);
	_cleanup_free_ char *path = NULL;
	int rc = -1;
	*wire_err = AGENT_E_SYSTEM;
	if (nfds < 1 || nfds > EXEC_MAX_FDS) {
		msb_err_set(err, MSB_EK_INTERNAL, 0, "spawning with %d descriptors", nfds);
		goto out;
	}
	if (!env) {
		msb_err_sys(err, "allocating the environment");
		goto out;
	}
	if (pipe2(st, O_CLOEXEC) < 0) {
		msb_err_sys(err, "creating pipes");
		goto out;
	}
	path = exec_find_program(req->argv[0], env);
	int lookup_errno = path ? 0 : errno;
	struct child_args ca = {req, path, lookup_errno, env, fds, nfds, ctty, st[1]};
	pid_t pid = start_child(&ca);
	if (pid < 0) {
		msb_err_sys(err, "vfork");
		*wire_err = agent_err_from_errno(errno);
		goto out;
	}
	close(st[1]);
	st[1] = -1;
	struct child_failure f;
	ssize_t n;
	do
		n = read(st[0], &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	if (n != 0) {
		/* The child has _exit()ed or is about to; the SIGCHLD loop reaps it. */
		if (n != (ssize_t)sizeof(f)) {
			msb_err_set(err, MSB_EK_SYSTEM, 0, "the child died before exec");
		} else {
			*wire_err = agent_err_from_errno(f.errnum);
			if (f.stage == 1)
				msb_err_set(err, MSB_EK_NOT_FOUND, f.errnum,
					    "changing to directory '%s'", req->cwd);
			else if (f.stage == 2)
				msb_err_set(err, MSB_EK_NOT_FOUND, f.errnum, "running '%s'",
					    req->argv[0]);
			else
				msb_err_set(err, MSB_EK_SYSTEM, f.errnum,
					    "setting up the command's process");
		}
		goto out;
	}
	*pid_out = pid;
	rc = 0;
out:
	msb_closep(&st[0]);
	msb_closep(&st[1]);
	return rc;
}

int exec_spawn(const struct agent_exec_req *req, struct spawned *out, uint32_t *wire_err,
	       struct msb_err *err)
{
	int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
	int rc = -1;
	*wire_err = AGENT_E_SYSTEM;
	if (req->stdin_stream) {
		if (pipe2(in, O_CLOEXEC) < 0) {
			msb_err_sys(err, "creating the stdin pipe");
			goto out;
		}
	} else {
		in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (in[0] < 0) {
			msb_err_sys(err, "opening /dev/null for stdin");
			goto out;
		}
	}
	if (pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
		msb_err_sys(err, "creating pipes");
		goto out;
	}
	pid_t pid;
	const int fds[3] = {in[0], o[1], e[1]};
	if (exec_spawn_fds(req, fds, 3, false, &pid, wire_err, err) < 0)
		goto out;
	if (fcntl(o[0], F_SETFL, O_NONBLOCK) < 0 || fcntl(e[0], F_SETFL, O_NONBLOCK) < 0 ||
	    (in[1] >= 0 && fcntl(in[1], F_SETFL, O_NONBLOCK) < 0)) {
		msb_err_sys(err, "making the command's pipes non-blocking");
		kill_tree(pid);
		goto out;
	}
	out->pid = pid;
	out->in_fd = steal_fd(&in[1]);
	out->out_fd = steal_fd(&o[0]);
	out->err_fd = steal_fd(&e[0]);
	rc = 0;
out:
	for (int i = 0; i < 2; i++) {
		msb_closep(&in[i]);
		msb_closep(&o[i]);
		msb_closep(&e[i]);
	}
	return rc;
}

/* Parse "pid (comm) S ppid pgrp session ..." from /proc/<pid>/stat; comm may
 * contain anything, so scan from the last ')'. */
static int read_stat(const char *pid, pid_t *ppid, pid_t *pgrp, pid_t *sid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	char state;
	int a, b, c;
	if (sscanf(p + 1, " %c %d %d %d", &state, &a, &b, &c) != 4)
		return -1;
	*ppid = a;
	*pgrp = b;
	*sid = c;
	return 0;
}

#define TREE_MAX 4096

static bool in_set(const pid_t *set, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (set[i] == pid)
			return true;
	return false;
}

/* Stop first, kill last: a stopped parent keeps its children's ppid pointing
 * at it (so a child that called setsid() is still found through it), and a
 * stopped process cannot fork (a fork with a signal pending is restarted). */
int kill_tree(pid_t leader)
{
	if (leader <= 1)
		return 0;
	pid_t set[TREE_MAX];
	size_t nset = 0;
	int hits = 0;
	set[nset++] = leader;
	kill(-leader, SIGSTOP);
	kill(leader, SIGSTOP);
	for (int round = 0; round < 16; round++) {
		bool found_new = false;
		DIR *d = opendir("/proc");
		if (!d)
			break;
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] < '1' || de->d_name[0] > '9')
				continue;
			pid_t pid = (pid_t)atoi(de->d_name), ppid, pgrp, sid;
			if (pid == getpid() || in_set(set, nset, pid) ||
			    read_stat(de->d_name, &ppid, &pgrp, &sid) < 0)
				continue;
			if (sid != leader && pgrp != leader && !in_set(set, nset, ppid))
				continue;
			kill(pid, SIGSTOP);
			if (nset < TREE_MAX)
				set[nset++] = pid;
			found_new = true;
		}
		closedir(d);
		if (!found_new)
			break;
	}
	for (size_t i = 0; i < nset; i++)
		if (kill(set[i], SIGKILL) == 0)
			hits++;
	kill(-leader, SIGKILL);
	return hits;
}
