/* File requests of the agent server (docs/agent-protocol.md, "Files").
 *
 * FILE_READ and FILE_WRITE are transfers that live across loop rounds: a read
 * sends DATA on stream 1 only within the credit the host granted (WINDOW) and
 * while the connection's outgoing buffer is below OUT_HIGH; a write accepts
 * DATA on stream 0 only within the credit we granted and returns it once the
 * bytes are in the file.  So neither side ever holds a whole file.  An upload
 * goes to a temporary file in the target's directory, renamed over the target
 * at EOF: a failed or abandoned upload leaves nothing behind.
 *
 * The other requests (LIST, STAT, MKDIR, REMOVE) are answered at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/files_proto.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "init/metrics.h"
#include "init/server_int.h"

#define REMOVE_DEPTH_MAX 256
#define ENTRIES_FRAME	 (256u << 10) /* start a new FILE_ENTRIES frame beyond this */
#define MAX_TRANSFERS	 64	      /* open reads and writes, all connections */

struct ftx {
	struct ftx *next;
	struct conn *conn;
	uint32_t id;
	bool upload;
	int fd;
	uint64_t credit; /* read: what the host lets us send; write: what it may send */
	char *tmp;	 /* upload: the temporary file, unlinked unless renamed */
	char *path;	 /* upload: the target */
	bool has_mtime;	 /* upload: set the file's mtime before the rename */
	uint64_t mtime;
};

static struct ftx *find_ftx(struct server *s, struct conn *c, uint32_t id)
{
	for (struct ftx *t = s->files; t; t = t->next)
		if (t->conn == c && t->id == id)
			return t;
	return NULL;
}

static void ftx_free(struct server *s, struct ftx *t)
{
	for (struct ftx **pp = &s->files; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	close_fd(&t->fd);
	if (t->tmp && unlink(t->tmp) < 0 && errno != ENOENT)
		msb_warn("removing the unfinished upload %s: %s", t->tmp, strerror(errno));
	free(t->tmp);
	free(t->path);
	free(t);
}

/* ERROR for `id` with the errno's kind and "what PATH: text". */
static void send_errno(struct conn *c, uint32_t id, int errnum, const char *what, const char *path)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s %.400s: %s", what, path, strerror(errnum));
	send_error(c, id, agent_err_from_errno(errnum), errnum, msg);
}

static void send_bad(struct conn *c, uint32_t id, int errnum, const char *path, const char *why)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%.400s: %s", path, why);
	send_error(c, id, AGENT_E_BAD_REQUEST, errnum, msg);
}

/* "/a/b//" -> "/a/b"; "/" stays. */
static void strip_slashes(char *p)
{
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
}

static const char *last_component(const char *p)
{
	const char *s = strrchr(p, '/');
	return s && s[1] ? s + 1 : p;
}

static uint32_t type_of(mode_t m)
{
	if (S_ISREG(m))
		return AGENT_FT_FILE;
	if (S_ISDIR(m))
		return AGENT_FT_DIR;
	if (S_ISLNK(m))
		return AGENT_FT_SYMLINK;
	return AGENT_FT_OTHER;
}

/* Fill *e from a stat; `dirfd`/`name` to read a symlink's target. */
static void info_of(const struct stat *st, int dirfd, const char *name, char *linkbuf,
		    size_t linkcap, struct agent_file_info *e)
{
	e->type = type_of(st->st_mode);
	e->size = (uint64_t)st->st_size;
	e->mode = (uint32_t)(st->st_mode & 07777);
	e->mtime = st->st_mtim.tv_sec > 0 ? (uint64_t)st->st_mtim.tv_sec : 0;
	e->link = NULL;
	if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(dirfd, name, linkbuf, linkcap - 1);
		if (n >= 0) {
			linkbuf[n] = '\0';
			e->link = linkbuf;
		}
	}
}

/* mkdir -p; existing directories are fine. */
static int mkdir_p(const char *path, mode_t mode)
{
	char buf[AGENT_PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(buf, saved ? 0755 : mode) < 0) {
			int e = errno;
			struct stat st;
			if (e != EEXIST || stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
				return errno = e == EEXIST ? ENOTDIR : e, -1;
		}
		if (!saved)
			return 0;
		*p = saved;
		while (p[1] == '/')
			p++;
		if (p[1] == '\0')
			return 0;
	}
}

/* ---- transfers ------------------------------------------------------------------- */

static void start_read(struct server *s, struct conn *c, uint32_t id, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		send_errno(c, id, errno, "opening", path);
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		send_errno(c, id, errno, "reading", path);
		close(fd);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		send_bad(c, id, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, path,
			 S_ISDIR(st.st_mode) ? "is a directory (list it, or copy it file by file)"
					     : "is not a regular file");
		close(fd);
		return;
	}
	struct ftx *t = calloc(1, sizeof(*t));
	if (!t) {
		close(fd);
		send_error(c, id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	t->conn = c;
	t->id = id;
	t->fd = fd;
	t->credit = AGENT_INITIAL_WINDOW;
	t->next = s->files;
	s->files = t;
	char linkbuf[8];
	struct agent_file_info e = {.name = (char *)last_component(path)};
	info_of(&st, -1, NULL, linkbuf, sizeof(linkbuf), &e);
	struct msb_err err;
	agent_msg_begin(&c->out, AGENT_FILE_INFO, id, AGENT_FILE_DOWN);
	agent_put_file_info(&c->out, &e);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

static void start_write(struct server *s, struct conn *c, uint32_t id,
			const struct agent_file_req *r)
{
	const char *path = r->path;
	if (strcmp(path, "/") == 0) {
		send_bad(c, id, EISDIR, path, "is a directory");
		return;
	}
	_cleanup_free_ char *dir = strdup(path);
	if (!dir) {
		send_error(c, id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (r->parents && mkdir_p(dir, 0755) < 0) {
		send_errno(c, id, errno, "creating the directory", dir);
		return;
	}
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		send_bad(c, id, EISDIR, path, "is a directory; name the file to write");
		return;
	}
	struct ftx *t = calloc(1, sizeof(*t));
	if (!t ||
	    asprintf(&t->tmp, "%s%s.msb-upload-XXXXXX", dir, strcmp(dir, "/") ? "/" : "") < 0) {
		free(t);
		send_error(c, id, AGENT_E_LIMIT, ENOMEM, "out of memory");
		return;
	}
	t->fd = mkostemp(t->tmp, O_CLOEXEC);
	if (t->fd < 0) {
		int e = errno;
		free(t->tmp);
		free(t);
		send_errno(c, id, e, "creating a file in", dir);
		return;
	}
	if (fchmod(t->fd, r->has_mode ? r->mode : 0644) < 0 || !(t->path = strdup(path))) {
		int e = errno;
		t->next = s->files; /* so that ftx_free unlinks it */
		s->files = t;
		ftx_free(s, t);
		send_errno(c, id, e, "setting the mode of", path);
		return;
	}
	t->conn = c;
	t->id = id;
	t->upload = true;
	t->has_mtime = r->has_mtime;
	t->mtime = r->mtime;
	t->credit = AGENT_INITIAL_WINDOW;
	t->next = s->files;
	s->files = t;
}

static void upload_data(struct server *s, struct ftx *t, const struct agent_hdr *h,
			const uint8_t *p)
{
	struct conn *c = t->conn;
	if (h->stream != AGENT_FILE_UP || h->len > t->credit) {
		send_error(c, t->id, AGENT_E_BAD_REQUEST, 0,
			   h->stream != AGENT_FILE_UP
				   ? "an upload takes data on stream 0 only; upload abandoned"
				   : "upload data beyond the granted window; upload abandoned");
		ftx_free(s, t);
		return;
	}
	t->credit -= h->len;
	size_t done = 0;
	while (done < h->len) {
		ssize_t n = write(t->fd, p + done, h->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			send_errno(c, t->id, n < 0 ? errno : EIO, "writing", t->path);
			ftx_free(s, t);
			return;
		}
		done += (size_t)n;
	}
	/* The bytes are in the file (writes here are synchronous): the host may
	 * send as many again. */
	t->credit += h->len;
	if (h->len)
		send_window(c, t->id, AGENT_FILE_UP, h->len);
}

static void upload_end(struct server *s, struct ftx *t)
{
	struct conn *c = t->conn;
	int fd = t->fd;
	t->fd = -1;
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)t->mtime}};
	if (t->has_mtime && futimens(fd, ts) < 0) {
		send_errno(c, t->id, errno, "setting the mtime of", t->path);
		close(fd);
	} else if (close(fd) < 0) {
		send_errno(c, t->id, errno, "writing", t->path);
	} else if (rename(t->tmp, t->path) < 0) {
		send_errno(c, t->id, errno, "renaming the upload to", t->path);
	} else {
		free(t->tmp);
		t->tmp = NULL;
		send_simple(c, AGENT_OK, t->id, 0);
	}
	ftx_free(s, t);
}

/* One chunk of a download; true when it ended (EOF or error sent, t freed). */
static void download_chunk(struct server *s, struct ftx *t)
{
	struct conn *c = t->conn;
	size_t want = AGENT_DATA_CHUNK;
	if (want > t->credit)
		want = (size_t)t->credit;
	uint8_t *dst = agent_buf_reserve(&c->out, AGENT_HDR_SIZE + want);
	if (!dst)
		return; /* memory may come back */
	ssize_t n = read(t->fd, dst + AGENT_HDR_SIZE, want);
	if (n < 0 && errno == EINTR)
		return;
	if (n < 0) {
		/* EAGAIN: a special file that looks regular (/proc/kmsg) would
		 * block; the agent must not wait for it, nor spin. */
		send_errno(c, t->id, errno, "reading", "the file");
		ftx_free(s, t);
		return;
	}
	struct agent_hdr h = {.len = (uint32_t)n,
			      .type = n ? AGENT_DATA : AGENT_EOF,
			      .id = t->id,
			      .stream = AGENT_FILE_DOWN};
	agent_hdr_encode(dst, &h);
	c->out.len += AGENT_HDR_SIZE + (size_t)n;
	t->credit -= (uint64_t)n;
	if (n == 0)
		ftx_free(s, t);
}

/* ---- the immediate requests ------------------------------------------------------ */

struct entries_out {
	struct conn *c;
	uint32_t id;
	bool open; /* a FILE_ENTRIES frame is being built */
};

static void entries_flush(struct entries_out *o)
{
	struct msb_err err;
	if (o->open && agent_msg_end(&o->c->out, &err) < 0)
		o->c->closing = true;
	o->open = false;
}

static void do_list(struct conn *c, uint32_t id, const char *path)
{
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		if (errno == ENOTDIR)
			send_bad(c, id, ENOTDIR, path, "is not a directory");
		else
			send_errno(c, id, errno, "listing", path);
		return;
	}
	DIR *d = fdopendir(dfd);
	if (!d) {
		send_errno(c, id, errno, "listing", path);
		close(dfd);
		return;
	}
	/* Count first: beyond the limit nothing is sent but the error. */
	size_t count = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		count++;
	if (count > AGENT_LIST_MAX + 2) {
		char msg[512];
		snprintf(msg, sizeof(msg),
			 "%.400s has more than %d entries; list a smaller directory or run a "
			 "command (ls, find) instead",
			 path, AGENT_LIST_MAX);
		send_error(c, id, AGENT_E_LIMIT, 0, msg);
		closedir(d);
		return;
	}
	rewinddir(d);
	struct entries_out o = {.c = c, .id = id};
	char linkbuf[AGENT_PATH_MAX];
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue; /* gone meanwhile */
		struct agent_file_info e = {.name = de->d_name};
		info_of(&st, dirfd(d), de->d_name, linkbuf, sizeof(linkbuf), &e);
		if (!o.open) {
			agent_msg_begin(&c->out, AGENT_FILE_ENTRIES, id, 0);
			o.open = true;
		}
		size_t start = c->out.msg_start;
		agent_put_file_entry(&c->out, &e);
		if (c->out.len - start > ENTRIES_FRAME)
			entries_flush(&o);
	}
	closedir(d);
	entries_flush(&o);
	send_simple(c, AGENT_OK, id, 0);
}

static void do_stat(struct conn *c, uint32_t id, const char *path, bool follow)
{
	struct stat st;
	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0) {
		send_errno(c, id, errno, "stat", path);
		return;
	}
	char linkbuf[AGENT_PATH_MAX];
	struct agent_file_info e = {.name = (char *)last_component(path)};
	info_of(&st, AT_FDCWD, path, linkbuf, sizeof(linkbuf), &e);
	struct msb_err err;
	agent_msg_begin(&c->out, AGENT_FILE_INFO, id, 0);
	agent_put_file_info(&c->out, &e);
	if (agent_msg_end(&c->out, &err) < 0)
		c->closing = true;
}

static void do_symlink(struct conn *c, uint32_t id, const struct agent_file_req *r)
{
	if (symlink(r->target, r->path) < 0)
		send_errno(c, id, errno, "creating the symlink", r->path);
	else
		send_simple(c, AGENT_OK, id, 0);
}

static void do_mkdir(struct conn *c, uint32_t id, const struct agent_file_req *r)
{
	mode_t mode = r->has_mode ? r->mode : 0755;
	if (r->parents ? mkdir_p(r->path, mode) < 0 : mkdir(r->path, mode) < 0) {
		send_errno(c, id, errno, "creating the directory", r->path);
		return;
	}
	/* mkdir() applied the umask; the host asked for exactly this mode. */
	if (r->has_mode && chmod(r->path, mode) < 0) {
		send_errno(c, id, errno, "setting the mode of", r->path);
		return;
	}
	send_simple(c, AGENT_OK, id, 0);
}

/* rm -r below an open directory, without following symlinks or leaving the
 * file system of `dev`. */
static int remove_below(int dfd, dev_t dev, int depth)
{
	if (depth > REMOVE_DEPTH_MAX)
		return errno = ELOOP, -1;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (st.st_dev != dev) {
				errno = EXDEV; /* a mount point: leave it alone */
				rc = -1;
				break;
			}
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0 || remove_below(sub, dev, depth + 1) < 0 ||
			    unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0) {
				rc = -1;
				break;
			}
		} else if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			rc = -1;
			break;
		}
	}
	int e = errno;
	closedir(d);
	errno = e;
	return rc;
}

static void do_remove(struct conn *c, uint32_t id, const struct agent_file_req *r)
{
	const char *path = r->path;
	if (strcmp(path, "/") == 0) {
		send_bad(c, id, EBUSY, path, "the root directory cannot be removed");
		return;
	}
	struct stat st;
	if (lstat(path, &st) < 0) {
		send_errno(c, id, errno, "removing", path);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0)
			send_errno(c, id, errno, "removing", path);
		else
			send_simple(c, AGENT_OK, id, 0);
		return;
	}
	if (r->recursive) {
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0 || remove_below(dfd, st.st_dev, 0) < 0) {
			send_errno(c, id, errno, "removing the contents of", path);
			return;
		}
	}
	if (rmdir(path) < 0) {
		if (errno == ENOTEMPTY || errno == EEXIST)
			send_bad(c, id, ENOTEMPTY, path,
				 "the directory is not empty; remove it recursively");
		else
			send_errno(c, id, errno, "removing", path);
		return;
	}
	send_simple(c, AGENT_OK, id, 0);
}

/* ---- dispatch --------------------------------------------------------------------- */

static void file_request(struct server *s, struct conn *c, const struct agent_hdr *h,
			 const uint8_t *p)
{
	struct msb_err err;
	if (h->id == 0) {
		send_error(c, 0, AGENT_E_BAD_REQUEST, 0, "file requests need a non-zero id");
		return;
	}
	if (find_ftx(s, c, h->id) || find_exec(s, c, h->id)) {
		send_error(c, h->id, AGENT_E_EXISTS, 0, "request id is already in use");
		return;
	}
	size_t ntransfers = 0;
	for (struct ftx *t = s->files; t; t = t->next)
		ntransfers++;
	if ((h->type == AGENT_FILE_READ || h->type == AGENT_FILE_WRITE) &&
	    ntransfers >= MAX_TRANSFERS) {
		send_error(c, h->id, AGENT_E_LIMIT, 0,
			   "too many file transfers are in progress; finish some first");
		return;
	}
	struct agent_file_req r;
	if (agent_decode_file_req(p, h->len, h->type, &r, &err) < 0) {
		send_error(c, h->id,
			   err.kind == MSB_EK_USAGE ? AGENT_E_UNSUPPORTED : AGENT_E_BAD_REQUEST, 0,
			   err.msg);
		return;
	}
	strip_slashes(r.path);
	switch (h->type) {
	case AGENT_FILE_READ:
		start_read(s, c, h->id, r.path);
		break;
	case AGENT_FILE_WRITE:
		start_write(s, c, h->id, &r);
		break;
	case AGENT_FILE_LIST:
		do_list(c, h->id, r.path);
		break;
	case AGENT_FILE_STAT:
		do_stat(c, h->id, r.path, r.follow);
		break;
	case AGENT_FILE_MKDIR:
		do_mkdir(c, h->id, &r);
		break;
	case AGENT_FILE_REMOVE:
		do_remove(c, h->id, &r);
		break;
	case AGENT_FILE_SYMLINK:
		do_symlink(c, h->id, &r);
		break;
	}
	agent_file_req_release(&r);
}

bool files_frame(struct server *s, struct conn *c, const struct agent_hdr *h, const uint8_t *p)
{
	struct ftx *t;
	uint32_t v;
	struct msb_err err;
	switch (h->type) {
	case AGENT_FILE_READ:
	case AGENT_FILE_WRITE:
	case AGENT_FILE_LIST:
	case AGENT_FILE_STAT:
	case AGENT_FILE_MKDIR:
	case AGENT_FILE_REMOVE:
	case AGENT_FILE_SYMLINK:
		file_request(s, c, h, p);
		return true;
	case AGENT_METRICS:
		metrics_request(s, c, h, p);
		return true;
	case AGENT_DATA:
	case AGENT_EOF:
	case AGENT_WINDOW:
	case AGENT_ERROR:
		break;
	default:
		return false;
	}
	if (!(t = find_ftx(s, c, h->id)))
		return false;
	switch (h->type) {
	case AGENT_DATA:
		if (t->upload)
			upload_data(s, t, h, p);
		else
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, "a download takes no data");
		break;
	case AGENT_EOF:
		if (t->upload && h->stream == AGENT_FILE_UP)
			upload_end(s, t);
		break;
	case AGENT_WINDOW:
		if (agent_decode_u32(p, h->len, h->type, AGENT_T_INCREMENT, &v, &err) < 0)
			send_error(c, h->id, AGENT_E_BAD_REQUEST, 0, err.msg);
		else if (!t->upload && h->stream == AGENT_FILE_DOWN &&
			 t->credit + v <= (1ull << 40))
			t->credit += v;
		break;
	case AGENT_ERROR:
		/* The host abandons the transfer; an upload leaves nothing. */
		ftx_free(s, t);
		break;
	}
	return true;
}

uint64_t files_tick(struct server *s, uint64_t now)
{
	uint64_t timeout = metrics_tick(s, now);
	for (struct ftx *t = s->files, *next; t; t = next) {
		next = t->next;
		if (t->upload || !t->credit || t->conn->closing || t->conn->out.len >= OUT_HIGH)
			continue;
		download_chunk(s, t);
	}
	/* A download that may go on needs no event: come back at once. */
	for (struct ftx *t = s->files; t; t = t->next)
		if (!t->upload && t->credit && !t->conn->closing && t->conn->out.len < OUT_HIGH)
			return 0;
	return timeout;
}

void files_conn_closed(struct server *s, struct conn *c)
{
	for (struct ftx *t = s->files, *next; t; t = next) {
		next = t->next;
		if (t->conn == c)
			ftx_free(s, t);
	}
	metrics_conn_closed(s, c);
}

void files_free_all(struct server *s)
{
	while (s->files)
		ftx_free(s, s->files);
	metrics_conn_closed(s, NULL);
}
