/* Reading layers (tar, tar+gzip, tar+zstd) into the merged tree with libarchive. */
#include "rootfs/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

#define WH_PREFIX  ".wh."
#define WH_OPAQUE  ".wh..wh..opq"
#define WH_META	   ".wh..wh."
#define READ_BLOCK (1u << 20)

int rf_layer_media_type_ok(const char *media_type)
{
	if (!media_type)
		return 1;
	/* OCI: application/vnd.oci.image.layer[.nondistributable].v1.tar[+gzip|+zstd];
	 * Docker: application/vnd.docker.image.rootfs[.foreign].diff.tar[.gzip]. */
	static const char *const ok[] = {
		"application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(ok); i++)
		if (strcmp(media_type, ok[i]) == 0)
			return 1;
	/* Other tar flavours some tools write (application/x-tar, ...+zstd variants of Docker
	 * types) are sniffed like a missing type; JSON, in-toto and the like are refused. */
	return strstr(media_type, "tar") != NULL && strstr(media_type, "json") == NULL;
}

static int read_data(struct archive *a, struct rf_tree *t, struct rf_spool *sp,
		     struct rf_inode *ino, const int *stop, struct msb_err *err)
{
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;
		int r = archive_read_data_block(a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "reading file data: %s",
					   archive_error_string(a));
		if (off < 0)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "a negative data offset");
		if (rf_spool_write(t, sp, ino, (uint64_t)off, buf, len, err) < 0)
			return -1;
		if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED))
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "stopped: another layer failed");
	}
}

/* The entry's metadata as a new inode (data not read yet). */
static struct rf_inode *entry_inode(struct archive_entry *e, struct rf_tree *t, struct msb_err *err)
{
	struct rf_inode *ino = rf_inode_new();
	if (!ino) {
		msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading a layer");
		return NULL;
	}
	mode_t type = archive_entry_filetype(e);
	switch (type) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFLNK:
	case AE_IFCHR:
	case AE_IFBLK:
	case AE_IFIFO:
	case AE_IFSOCK:
		break;
	default:
		rf_inode_free(ino);
		msb_err_set(err, MSB_EK_CORRUPT, 0, "an entry of unknown type 0%o", (unsigned)type);
		return NULL;
	}
	/* Permission bits with setuid, setgid and sticky; the type from the entry type. */
	ino->mode = (uint32_t)type | (archive_entry_perm(e) & 07777);
	la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
	if (uid < 0 || uid > UINT32_MAX - 1 || gid < 0 || gid > UINT32_MAX - 1) {
		rf_inode_free(ino);
		msb_err_set(err, MSB_EK_CORRUPT, 0, "an owner out of range (%lld:%lld)",
			    (long long)uid, (long long)gid);
		return NULL;
	}
	ino->uid = (uint32_t)uid;
	ino->gid = (uint32_t)gid;
	if (archive_entry_mtime_is_set(e)) {
		ino->mtime = archive_entry_mtime(e);
		long ns = archive_entry_mtime_nsec(e);
		ino->mtime_nsec = ns >= 0 && ns < 1000000000L ? (uint32_t)ns : 0;
	}
	if (type == AE_IFCHR || type == AE_IFBLK) {
		ino->rdev_major = (uint32_t)archive_entry_rdevmajor(e);
		ino->rdev_minor = (uint32_t)archive_entry_rdevminor(e);
	}
	if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(e);
		if (!target)
			target = archive_entry_symlink_utf8(e);
		if (!target || !*target || strlen(target) >= RF_PATH_MAX) {
			rf_inode_free(ino);
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "a symlink with an empty or too long target");
			return NULL;
		}
		if (!(ino->symlink = strdup(target))) {
			rf_inode_free(ino);
			msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading a layer");
			return NULL;
		}
	}
	if (type == AE_IFREG) {
		la_int64_t size = archive_entry_size(e);
		if (size < 0 || (uint64_t)size > t->limits.max_file_size) {
			rf_inode_free(ino);
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "a file claims %lld bytes, over the cap of %llu on one file",
				    (long long)size, (unsigned long long)t->limits.max_file_size);
			return NULL;
		}
		ino->size = (uint64_t)size;
	}
	archive_entry_xattr_reset(e);
	const char *xname;
	const void *xval;
	size_t xlen;
	while (archive_entry_xattr_next(e, &xname, &xval, &xlen) == ARCHIVE_OK) {
		if (!xname || !*xname || strlen(xname) > RF_NAME_MAX || xlen > 65536) {
			rf_inode_free(ino);
			msb_err_set(err, MSB_EK_CORRUPT, 0, "an invalid extended attribute");
			return NULL;
		}
		if (rf_inode_add_xattr(ino, xname, xval, xlen, err) < 0) {
			rf_inode_free(ino);
			return NULL;
		}
	}
	return ino;
}

/* ---- decoding: a layer's entries as a list of operations, file data in a spool ---------------
 *
 * Decoding (decompression, tar parsing, copying data out) is the slow part and is independent
 * per layer, so layers are decoded in parallel; applying the operations to the tree is quick
 * and happens in layer order. */

struct rf_op {
	char *path;	      /* as in the layer; split again when applied */
	char *link;	      /* a hard link's target, or NULL */
	struct rf_inode *ino; /* the new entry (NULL for links and whiteouts) */
};

struct rf_layer_log {
	struct rf_op *ops;
	size_t n, cap;
};

static void log_release(struct rf_layer_log *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->ops[i].path);
		free(l->ops[i].link);
		rf_inode_free(l->ops[i].ino);
	}
	free(l->ops);
	memset(l, 0, sizeof(*l));
}

static const char *entry_path(struct archive_entry *e)
{
	const char *p = archive_entry_pathname(e);
	return p ? p : archive_entry_pathname_utf8(e);
}

static int decode_entry(struct archive *a, struct archive_entry *e, struct rf_tree *t,
			struct rf_spool *sp, struct rf_layer_log *log, const int *stop,
			struct msb_err *err)
{
	const char *path = entry_path(e);
	if (!path)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "an entry without a name");
	/* Split now to refuse bad paths before reading data; again when applying. */
	char buf[RF_PATH_MAX];
	char *comps[RF_PATH_MAX / 2];
	size_t n;
	if (rf_path_split(path, buf, sizeof(buf), comps, MSB_ARRAY_SIZE(comps), &n, err) < 0)
		return -1;
	bool whiteout = n && strncmp(comps[n - 1], WH_PREFIX, strlen(WH_PREFIX)) == 0;
	if (log->n == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 256;
		struct rf_op *ops = realloc(log->ops, cap * sizeof(*ops));
		if (!ops)
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading a layer");
		log->ops = ops;
		log->cap = cap;
	}
	struct rf_op *op = &log->ops[log->n];
	memset(op, 0, sizeof(*op));
	if (!(op->path = strdup(path)))
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading a layer");
	log->n++; /* from here on the log owns what op holds */
	const char *link = archive_entry_hardlink(e);
	if (!link)
		link = archive_entry_hardlink_utf8(e);
	if (whiteout)
		return 0;
	if (link) {
		if (!(op->link = strdup(link)))
			return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading a layer");
		return 0;
	}
	if (!(op->ino = entry_inode(e, t, err)))
		return -1;
	if (S_ISREG(op->ino->mode))
		return read_data(a, t, sp, op->ino, stop, err);
	return 0;
}

static int apply_op(struct rf_tree *t, struct rf_op *op, uint32_t layer, struct msb_err *err)
{
	char buf[RF_PATH_MAX];
	char *comps[RF_PATH_MAX / 2];
	size_t n;
	if (rf_path_split(op->path, buf, sizeof(buf), comps, MSB_ARRAY_SIZE(comps), &n, err) < 0)
		return -1;
	const char *base = n ? comps[n - 1] : "";
	if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
		if (strcmp(base, WH_OPAQUE) == 0)
			return rf_tree_opaque(t, comps, n - 1, layer, err);
		if (strncmp(base, WH_META, strlen(WH_META)) == 0)
			return 0; /* aufs bookkeeping (.wh..wh.plnk ...): not part of the tree */
		return rf_tree_whiteout(t, comps, n - 1, base + strlen(WH_PREFIX), layer, err);
	}
	if (op->link) {
		char tbuf[RF_PATH_MAX];
		char *tcomps[RF_PATH_MAX / 2];
		size_t tn;
		if (rf_path_split(op->link, tbuf, sizeof(tbuf), tcomps, MSB_ARRAY_SIZE(tcomps), &tn,
				  err) < 0)
			return -1;
		return rf_tree_add_hardlink(t, comps, n, tcomps, tn, layer, err);
	}
	struct rf_inode *ino = op->ino;
	op->ino = NULL; /* rf_tree_add takes it, even on failure */
	return rf_tree_add(t, comps, n, ino, layer, err);
}

static int apply_log(struct rf_tree *t, struct rf_layer_log *log, uint32_t layer, const char *what,
		     struct msb_err *err)
{
	for (size_t i = 0; i < log->n; i++)
		if (apply_op(t, &log->ops[i], layer, err) < 0)
			return msb_err_wrap(err, "layer %s, entry '%.200s'", what,
					    log->ops[i].path);
	return 0;
}

static struct archive *reader_new(void)
{
	struct archive *a = archive_read_new();
	if (!a)
		return NULL;
	/* Sniff the compression rather than trust the media type: the bytes decide. */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	return a;
}

static int decode_archive(struct archive *a, struct rf_tree *t, struct rf_spool *sp,
			  struct rf_layer_log *log, const char *what, const int *stop,
			  struct msb_err *err)
{
	for (;;) {
		struct archive_entry *e;
		int r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "reading layer %s: %s", what,
					   archive_error_string(a));
		if (rf_tree_count_entry(t, err) < 0 ||
		    decode_entry(a, e, t, sp, log, stop, err) < 0) {
			const char *name = entry_path(e);
			return msb_err_wrap(err, "layer %s, entry '%.200s'", what,
					    name ? name : "?");
		}
	}
}

static int decode_file(struct rf_tree *t, const char *path, const char *media_type,
		       struct rf_spool *sp, struct rf_layer_log *log, const int *stop,
		       struct msb_err *err)
{
	if (!rf_layer_media_type_ok(media_type))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the layer media type '%s' is not a tar layer this build reads",
				   media_type);
	struct archive *a = reader_new();
	if (!a)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "opening layer %s", path);
	int rc;
	if (archive_read_open_filename(a, path, READ_BLOCK) != ARCHIVE_OK) {
		int e = archive_errno(a);
		rc = msb_err_set(err, e == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_CORRUPT, 0,
				 "opening layer %s: %s", path, archive_error_string(a));
	} else {
		rc = decode_archive(a, t, sp, log, path, stop, err);
	}
	archive_read_free(a);
	return rc;
}

int rf_layer_apply(struct rf_tree *t, const char *path, const char *media_type, uint32_t layer,
		   struct msb_err *err)
{
	struct rf_layer_log log = {0};
	int rc = decode_file(t, path, media_type, &t->spool, &log, NULL, err);
	if (rc == 0)
		rc = apply_log(t, &log, layer, path, err);
	log_release(&log);
	return rc;
}

int rf_layer_apply_mem(struct rf_tree *t, const void *data, size_t len, uint32_t layer,
		       struct msb_err *err)
{
	struct archive *a = reader_new();
	if (!a)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "opening a layer");
	struct rf_layer_log log = {0};
	int rc;
	if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
		rc = msb_err_set(err, MSB_EK_CORRUPT, 0, "opening a layer: %s",
				 archive_error_string(a));
	else
		rc = decode_archive(a, t, &t->spool, &log, "(memory)", NULL, err);
	archive_read_free(a);
	if (rc == 0)
		rc = apply_log(t, &log, layer, "(memory)", err);
	log_release(&log);
	return rc;
}

/* ---- several layers: decoded in parallel, applied in order ------------------------------------
 */

#define MAX_DECODERS 4

struct decode_job {
	const struct rootfs_layer *layer;
	struct rf_spool spool;
	struct rf_layer_log log;
	struct msb_err err;
	int rc;
};

struct decode_pool {
	struct rf_tree *t;
	struct decode_job *jobs;
	size_t n;
	size_t next; /* the next job to take (atomic) */
	int stop;    /* set when a job failed: the others give up early (atomic) */
};

static void *decoder(void *arg)
{
	struct decode_pool *p = arg;
	for (;;) {
		size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
		if (i >= p->n)
			return NULL;
		struct decode_job *j = &p->jobs[i];
		if (__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
			j->rc = msb_err_set(&j->err, MSB_EK_CORRUPT, 0,
					    "stopped: another layer failed");
			continue;
		}
		j->rc = decode_file(p->t, j->layer->path, j->layer->media_type, &j->spool, &j->log,
				    &p->stop, &j->err);
		if (j->rc < 0)
			__atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
	}
}

static size_t decoder_count(size_t n)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t k = cpus > 0 ? (size_t)cpus : 1;
	if (k > MAX_DECODERS)
		k = MAX_DECODERS;
	return k < n ? k : n;
}

int rf_layers_apply(struct rf_tree *t, const struct rootfs_layer *layers, size_t n,
		    struct msb_err *err)
{
	if (n == 0)
		return 0;
	struct decode_pool p = {.t = t, .n = n};
	p.jobs = calloc(n, sizeof(*p.jobs));
	if (!p.jobs)
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "decoding layers");
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		p.jobs[i].layer = &layers[i];
		p.jobs[i].spool.fd = -1;
		/* Spools are opened here, in one thread (the tree's list of them is not locked). */
		if (rc == 0 && rf_spool_open(t, &p.jobs[i].spool, err) < 0)
			rc = -1;
	}
	if (rc == 0) {
		size_t k = decoder_count(n);
		pthread_t th[MAX_DECODERS];
		size_t started = 0;
		for (; started + 1 < k; started++)
			if (pthread_create(&th[started], NULL, decoder, &p) != 0)
				break; /* fewer threads is fine: the caller's thread decodes too */
		decoder(&p);
		for (size_t i = 0; i < started; i++)
			pthread_join(th[i], NULL);
		/* Report the first layer that really failed (not one stopped because of it). */
		for (size_t i = 0; i < n && rc == 0; i++) {
			struct decode_job *j = &p.jobs[i];
			if (j->rc < 0 && !strstr(j->err.msg, "stopped: another layer failed")) {
				*err = j->err;
				rc = msb_err_wrap(err, "layer %zu of %zu", i + 1, n);
			}
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (apply_log(t, &p.jobs[i].log, (uint32_t)(i + 1), layers[i].path, err) <
			    0)
				rc = msb_err_wrap(err, "layer %zu of %zu", i + 1, n);
			log_release(&p.jobs[i].log);
		}
	}
	for (size_t i = 0; i < n; i++)
		log_release(&p.jobs[i].log);
	free(p.jobs);
	return rc;
}
