/* msb cp SRC DST: copy files and directories between the host and a running
 * project sandbox, as `docker cp`: one side is NAME:PATH.  Everything goes
 * through the agent's file requests (streamed, binary-safe; an upload lands
 * under a temporary name and is renamed when complete, on both sides).
 *
 * Which sandbox: a row of the project's state DB that is RUNNING and alive;
 * the agent socket is the row's agent_socket, or else the --vsock argument on
 * its msb-vmm's command line. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/client.h"
#include "cli/cli.h"
#include "cli/project_cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "project/state.h"

#define CP_DEPTH_MAX 256

int cmd_cp(int argc, char **argv);

static void usage(FILE *out)
{
	fprintf(out, "Usage: msb cp [-f PATH] NAME:SRC_PATH DEST_PATH\n"
		     "       msb cp [-f PATH] SRC_PATH NAME:DEST_PATH\n\n"
		     "Copy a file or a directory (recursively) out of or into the running sandbox\n"
		     "NAME of the project (started with msb up or msb run -d), as docker cp does:\n"
		     "when DEST_PATH is an existing directory the copy goes inside it, else it\n"
		     "becomes DEST_PATH (whose parent must exist); SRC_PATH ending in /. copies a\n"
		     "directory's contents.  Modes, files' mtimes and symlinks (as symlinks) are\n"
		     "kept; devices, FIFOs and sockets are skipped with a warning.\n"
		     "Guest paths are absolute or relative to /.  A local path with a ':' must\n"
		     "start with / or ./.\n\n"
		     "Options:\n" PCLI_OPTS_HELP);
}

struct cp {
	struct agent_client *ac;
	const char *sandbox;
	unsigned files, dirs, skipped;
	unsigned long long bytes;
};

/* ---- finding the sandbox -------------------------------------------------------- */

/* NAME:PATH -> true and the two parts; a local path otherwise. */
static bool split_remote(const char *arg, char **name, const char **path)
{
	if (arg[0] == '/' || arg[0] == '.')
		return false;
	const char *colon = strchr(arg, ':');
	if (!colon || colon == arg || memchr(arg, '/', (size_t)(colon - arg)))
		return false;
	*name = strndup(arg, (size_t)(colon - arg));
	*path = colon[1] ? colon + 1 : "/";
	return *name != NULL;
}

/* msb-vmm's --vsock argument, from /proc/<pid>/cmdline. */
static char *vsock_of(pid_t pid, struct msb_err *err)
{
	char path[64], buf[16384];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0) {
		msb_err_set(err, MSB_EK_STATE, errno,
			    "reading the command line of msb-vmm (pid %d)", (int)pid);
		return NULL;
	}
	buf[n] = '\0';
	for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
		char *next = a + strlen(a) + 1;
		if (strcmp(a, "--vsock") == 0 && next < buf + n)
			return strdup(next);
	}
	msb_err_set(err, MSB_EK_STATE, 0, "msb-vmm (pid %d) has no vsock socket", (int)pid);
	return NULL;
}

static struct agent_client *connect_sandbox(struct pcli *c, const char *name, struct msb_err *err)
{
	struct msb_state_row row = {0};
	bool found = false;
	if (msb_state_get(c->st, name, c->p.config_name, &row, &found, err) < 0)
		return NULL;
	bool alive = found && msb_state_row_alive(&row) && row.microvm_pid > 0;
	pid_t vmm = row.microvm_pid;
	/* The socket its supervisor recorded once the agent answered; before
	 * that (or from an older msb), msb-vmm's own --vsock argument. */
	_cleanup_free_ char *sock =
		alive && row.agent_socket && row.agent_socket[0] ? strdup(row.agent_socket) : NULL;
	msb_state_row_clear(&row);
	if (!alive) {
		msb_err_set(err, MSB_EK_STATE, 0,
			    "sandbox '%s' is not running; start it in the background first "
			    "(msb up %s, or msb run -d %s)",
			    name, name, name);
		return NULL;
	}
	if (!sock && !(sock = vsock_of(vmm, err)))
		return NULL;
	struct agent_client *ac = agent_client_open(sock, 10000, err);
	if (!ac)
		msb_err_wrap(err, "sandbox '%s' (is it still starting? see msb log %s)", name,
			     name);
	return ac;
}

/* ---- paths ------------------------------------------------------------------------- */

static char *join(const char *dir, const char *name)
{
	char *p;
	size_t n = strlen(dir);
	if (asprintf(&p, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name) < 0)
		return NULL;
	return p;
}

/* The last component ("a/b/" -> "b"); copied. */
static char *base_of(const char *path)
{
	_cleanup_free_ char *t = strdup(path);
	if (!t)
		return NULL;
	size_t n = strlen(t);
	while (n > 1 && t[n - 1] == '/')
		t[--n] = '\0';
	char *s = strrchr(t, '/');
	return strdup(s && s[1] ? s + 1 : t);
}

/* "dir/." and "dir/./": copy the contents, not the directory. */
static bool contents_only(const char *path)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	return n >= 2 && path[n - 1] == '.' && path[n - 2] == '/';
}

static int oom(struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "out of memory");
}

/* ---- sandbox -> host ------------------------------------------------------------------ */

static int pull_entry(struct cp *cp, const char *gpath, const struct agent_file_info *info,
		      const char *hpath, int depth, struct msb_err *err);

static int pull_file(struct cp *cp, const char *gpath, const char *hpath, struct msb_err *err)
{
	_cleanup_free_ char *dir = strdup(hpath), *tmp = NULL;
	if (!dir)
		return oom(err);
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	if (asprintf(&tmp, "%s/.msb-cp-XXXXXX", slash ? dir : ".") < 0) {
		tmp = NULL;
		return oom(err);
	}
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "creating a file beside %s", hpath);
	struct agent_file_info info;
	int rc = agent_file_read(cp->ac, gpath, agent_sink_fd, &fd, &info, err);
	if (rc == 0) {
		struct timespec ts[2] = {{.tv_sec = (time_t)info.mtime},
					 {.tv_sec = (time_t)info.mtime}};
		if (fchmod(fd, info.mode) < 0 || futimens(fd, ts) < 0)
			rc = msb_err_sys(err, "setting the mode and time of %s", hpath);
		else if (rename(tmp, hpath) < 0)
			rc = msb_err_sys(err, "renaming the copy to %s", hpath);
		else
			cp->bytes += info.size;
		agent_file_info_clear(&info);
	}
	if (rc < 0)
		unlink(tmp);
	cp->files += rc == 0;
	return rc;
}

static int pull_dir(struct cp *cp, const char *gpath, const struct agent_file_info *info,
		    const char *hpath, int depth, struct msb_err *err)
{
	if (depth > CP_DEPTH_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s: more than %d levels of directories",
				   gpath, CP_DEPTH_MAX);
	/* Below the destination the user named, an existing directory must be a
	 * real one: a symlink the guest had us create a moment ago (an entry
	 * listed twice, as a symlink and as a directory) must not lead the copy
	 * out of the destination. */
	struct stat st;
	if (mkdir(hpath, 0700) < 0 &&
	    !(errno == EEXIST && (depth ? lstat(hpath, &st) : stat(hpath, &st)) == 0 &&
	      S_ISDIR(st.st_mode))) {
		if (errno == EEXIST)
			return msb_err_set(err, MSB_EK_EXISTS, 0,
					   "%s exists and is not a directory", hpath);
		return msb_err_sys(err, "creating the directory %s", hpath);
	}
	struct agent_file_info *ents = NULL;
	size_t n = 0;
	if (agent_file_list(cp->ac, gpath, &ents, &n, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		_cleanup_free_ char *g = join(gpath, ents[i].name), *h = join(hpath, ents[i].name);
		rc = g && h ? pull_entry(cp, g, &ents[i], h, depth + 1, err) : oom(err);
	}
	agent_file_list_free(ents, n);
	if (rc == 0) {
		struct timespec ts[2] = {{.tv_sec = (time_t)info->mtime},
					 {.tv_sec = (time_t)info->mtime}};
		if (chmod(hpath, info->mode) < 0 || utimensat(AT_FDCWD, hpath, ts, 0) < 0)
			rc = msb_err_sys(err, "setting the mode and time of %s", hpath);
	}
	cp->dirs += rc == 0;
	return rc;
}

static int pull_entry(struct cp *cp, const char *gpath, const struct agent_file_info *info,
		      const char *hpath, int depth, struct msb_err *err)
{
	switch (info->type) {
	case AGENT_FT_FILE:
		return pull_file(cp, gpath, hpath, err);
	case AGENT_FT_DIR:
		return pull_dir(cp, gpath, info, hpath, depth, err);
	case AGENT_FT_SYMLINK:
		if (unlink(hpath) < 0 && errno != ENOENT)
			return msb_err_sys(err, "replacing %s", hpath);
		if (symlink(info->link ? info->link : "", hpath) < 0)
			return msb_err_sys(err, "creating the symlink %s", hpath);
		cp->files++;
		return 0;
	default:
		msb_warn("%s: not a file, directory or symlink; skipped", gpath);
		cp->skipped++;
		return 0;
	}
}

static int pull(struct cp *cp, const char *gpath, const char *hdest, struct msb_err *err)
{
	struct agent_file_info info;
	if (agent_file_stat(cp->ac, gpath, false, &info, err) < 0)
		return -1;
	_cleanup_free_ char *target = NULL, *base = base_of(gpath);
	struct stat st;
	bool dest_dir = stat(hdest, &st) == 0 && S_ISDIR(st.st_mode);
	int rc;
	if (!base) {
		rc = oom(err);
	} else if (info.type == AGENT_FT_DIR && contents_only(gpath)) {
		rc = pull_dir(cp, gpath, &info, hdest, 0, err); /* into hdest, made if missing */
	} else if (!(target = dest_dir ? join(hdest, base) : strdup(hdest))) {
		rc = oom(err);
	} else if (info.type != AGENT_FT_DIR && !dest_dir && hdest[strlen(hdest) - 1] == '/') {
		rc = msb_err_set(err, MSB_EK_NOT_FOUND, 0, "the directory %s does not exist",
				 hdest);
	} else {
		rc = pull_entry(cp, gpath, &info, target, 0, err);
	}
	agent_file_info_clear(&info);
	return rc;
}

/* ---- host -> sandbox ------------------------------------------------------------------ */

static int push_entry(struct cp *cp, const char *hpath, const char *gpath, int depth,
		      struct msb_err *err);

static int push_dir(struct cp *cp, const char *hpath, const struct stat *st, const char *gpath,
		    int depth, struct msb_err *err)
{
	if (depth > CP_DEPTH_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s: more than %d levels of directories",
				   hpath, CP_DEPTH_MAX);
	struct agent_file_info gi;
	if (agent_file_stat(cp->ac, gpath, true, &gi, err) == 0) {
		bool dir = gi.type == AGENT_FT_DIR;
		agent_file_info_clear(&gi);
		if (!dir)
			return msb_err_set(err, MSB_EK_EXISTS, 0,
					   "%s exists in the sandbox and is not a directory",
					   gpath);
	} else if (err->kind != MSB_EK_NOT_FOUND ||
		   agent_file_mkdir(cp->ac, gpath, (int)(st->st_mode & 07777), false, err) < 0) {
		return -1;
	}
	DIR *d = opendir(hpath);
	if (!d)
		return msb_err_sys(err, "reading the directory %s", hpath);
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *h = join(hpath, de->d_name), *g = join(gpath, de->d_name);
		rc = h && g ? push_entry(cp, h, g, depth + 1, err) : oom(err);
	}
	closedir(d);
	cp->dirs += rc == 0;
	return rc;
}

static int push_entry(struct cp *cp, const char *hpath, const char *gpath, int depth,
		      struct msb_err *err)
{
	struct stat st;
	if (lstat(hpath, &st) < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
				   "%s", hpath);
	if (S_ISDIR(st.st_mode))
		return push_dir(cp, hpath, &st, gpath, depth, err);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(hpath, target, sizeof(target) - 1);
		if (n < 0)
			return msb_err_sys(err, "reading the symlink %s", hpath);
		target[n] = '\0';
		/* As on the host side: an existing entry is replaced. */
		struct msb_err e2;
		if (agent_file_remove(cp->ac, gpath, false, &e2) < 0 &&
		    e2.kind != MSB_EK_NOT_FOUND) {
			*err = e2;
			return -1;
		}
		if (agent_file_symlink(cp->ac, target, gpath, err) < 0)
			return -1;
		cp->files++;
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		msb_warn("%s: not a file, directory or symlink; skipped", hpath);
		cp->skipped++;
		return 0;
	}
	_cleanup_close_ int fd = open(hpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening %s", hpath);
	struct agent_file_write_opts wo = {.path = gpath,
					   .mode = (int)(st.st_mode & 07777),
					   .set_mtime = st.st_mtim.tv_sec > 0,
					   .mtime = (uint64_t)st.st_mtim.tv_sec};
	if (agent_file_write_opts(cp->ac, &wo, agent_source_fd, &fd, err) < 0)
		return -1;
	cp->files++;
	cp->bytes += (unsigned long long)st.st_size;
	return 0;
}

static int push(struct cp *cp, const char *hsrc, const char *gdest, struct msb_err *err)
{
	struct stat st;
	if (stat(hsrc, &st) < 0)
		return msb_err_set(err, errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM, errno,
				   "%s", hsrc);
	struct agent_file_info gi;
	bool dest_dir = false;
	if (agent_file_stat(cp->ac, gdest, true, &gi, err) == 0) {
		dest_dir = gi.type == AGENT_FT_DIR;
		agent_file_info_clear(&gi);
	} else if (err->kind != MSB_EK_NOT_FOUND) {
		return -1;
	}
	if (S_ISDIR(st.st_mode) && contents_only(hsrc))
		return push_dir(cp, hsrc, &st, gdest, 0, err); /* into gdest, made if missing */
	_cleanup_free_ char *base = base_of(hsrc);
	_cleanup_free_ char *target = !base ? NULL : dest_dir ? join(gdest, base) : strdup(gdest);
	if (!target)
		return oom(err);
	return push_entry(cp, hsrc, target, 0, err);
}

/* ---- the command ------------------------------------------------------------------------ */

int cmd_cp(int argc, char **argv)
{
	const char *cmd = "cp";
	static const struct option opts[] = {PCLI_LONG_OPTS, {0}};
	struct pcli c = {.cmd = cmd};
	int o;
	optind = 0;
	opterr = 0;
	while ((o = getopt_long(argc, argv, ":" PCLI_SHORT_OPTS, opts, NULL)) != -1) {
		switch (o) {
			PCLI_CASES(c, cmd, usage);
		default:
			return cli_bad_option(cmd, o, argv);
		}
	}
	if (argc - optind != 2)
		return cli_usage_error(cmd, "want SRC and DEST, one of them NAME:PATH");
	const char *src = argv[optind], *dst = argv[optind + 1];
	_cleanup_free_ char *sname = NULL, *dname = NULL;
	const char *spath = src, *dpath = dst;
	bool sremote = split_remote(src, &sname, &spath);
	bool dremote = split_remote(dst, &dname, &dpath);
	if (sremote == dremote)
		return cli_usage_error(cmd,
				       sremote ? "copying between two sandboxes is not supported; "
						 "copy through the host"
					       : "one of SRC and DEST must be NAME:PATH (a local "
						 "path with ':' must start with / or ./)");
	char *name = sremote ? sname : dname;
	int rc = pcli_open(&c, true);
	if (rc)
		return rc;
	if ((rc = pcli_check_names(&c, &name, 1, true))) {
		pcli_close(&c);
		return rc;
	}
	struct msb_err err = {0};
	struct cp cp = {.sandbox = name};
	if (!(cp.ac = connect_sandbox(&c, name, &err))) {
		rc = cli_fail(cmd, &err);
	} else if ((sremote ? pull(&cp, spath, dpath, &err) : push(&cp, spath, dpath, &err)) < 0) {
		msb_err_wrap(&err, "sandbox '%s'", name);
		rc = cli_fail(cmd, &err);
	} else if (cli_is_tty(2)) {
		fprintf(stderr, "msb cp: %u files, %u directories, %llu bytes%s\n", cp.files,
			cp.dirs, cp.bytes, cp.skipped ? " (some entries skipped)" : "");
	}
	if (cp.ac)
		agent_client_free(cp.ac);
	pcli_close(&c);
	return rc;
}
