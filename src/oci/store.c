#include "oci/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "oci/digest.h"

struct oci_store {
	sqlite3 *db;
	char home[4096];
	char dir[4200];
};

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS manifests("
	" digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, json BLOB,"
	" config_digest TEXT, size INTEGER NOT NULL, rootfs_path TEXT NOT NULL,"
	" rootfs_format TEXT NOT NULL, created_at INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS configs("
	" manifest_digest TEXT PRIMARY KEY REFERENCES manifests(digest) ON DELETE CASCADE,"
	" digest TEXT, json BLOB, os TEXT, architecture TEXT, env_json TEXT NOT NULL,"
	" cmd_json TEXT, entrypoint_json TEXT, working_dir TEXT, user TEXT,"
	" exposed_ports_json TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS layers("
	" manifest_digest TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,"
	" position INTEGER NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,"
	" size INTEGER NOT NULL, PRIMARY KEY(manifest_digest, position));"
	"CREATE TABLE IF NOT EXISTS images("
	" reference TEXT PRIMARY KEY,"
	" manifest_digest TEXT NOT NULL REFERENCES manifests(digest),"
	" index_digest TEXT, pulled_at INTEGER NOT NULL);"
	/* Bump with a migration when the schema changes. */
	"PRAGMA user_version = 1;";

static int db_err(struct oci_store *st, struct msb_err *err, const char *what)
{
	return msb_err_set(err, MSB_EK_SYSTEM, 0, "image store database: %s: %s", what,
			   sqlite3_errmsg(st->db));
}

int oci_store_open(const char *home, struct oci_store **out, struct msb_err *err)
{
	struct oci_store *st = calloc(1, sizeof(*st));
	if (!st)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	if (home)
		snprintf(st->home, sizeof(st->home), "%s", home);
	else if (msb_home(st->home, sizeof(st->home), err) < 0)
		goto fail;
	snprintf(st->dir, sizeof(st->dir), "%s/images", st->home);
	static const char *const subdirs[] = {"blobs/sha256", "rootfs", "tmp", "locks"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(subdirs); i++) {
		char p[4400];
		snprintf(p, sizeof(p), "%s/%s", st->dir, subdirs[i]);
		if (msb_mkdir_p(p, 0755, err) < 0)
			goto fail;
	}
	char dbp[4400];
	snprintf(dbp, sizeof(dbp), "%s/images.db", st->dir);
	if (sqlite3_open_v2(dbp, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "opening the image store %s: %s", dbp,
			    st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 60000);
	char *e = NULL;
	if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", NULL, NULL,
			 &e) != SQLITE_OK ||
	    sqlite3_exec(st->db, schema, NULL, NULL, &e) != SQLITE_OK) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "setting up the image store %s: %s", dbp,
			    e ? e : "?");
		sqlite3_free(e);
		goto fail;
	}
	*out = st;
	return 0;
fail:
	oci_store_close(st);
	return -1;
}

void oci_store_close(struct oci_store *st)
{
	if (!st)
		return;
	if (st->db)
		sqlite3_close(st->db);
	free(st);
}

const char *oci_store_dir(const struct oci_store *st)
{
	return st->dir;
}

const char *oci_store_home(const struct oci_store *st)
{
	return st->home;
}

void oci_store_blob_path(const struct oci_store *st, const char *digest, char *buf, size_t len)
{
	snprintf(buf, len, "%s/blobs/sha256/%s", st->dir, digest + 7);
}

void oci_store_partial_path(const struct oci_store *st, const char *digest, char *buf, size_t len)
{
	snprintf(buf, len, "%s/tmp/%s.partial", st->dir, digest + 7);
}

void oci_store_rootfs_path(const struct oci_store *st, const char *manifest_digest, char *buf,
			   size_t len)
{
	snprintf(buf, len, "%s/rootfs/%s.img", st->dir, manifest_digest + 7);
}

int oci_store_lock_ref(struct oci_store *st, const char *reference, struct msb_err *err)
{
	char d[OCI_DIGEST_MAX + 1], p[4400];
	oci_sha256_buf(reference, strlen(reference), d);
	snprintf(p, sizeof(p), "%s/locks/%.24s.lock", st->dir, d + 7);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return msb_err_sys(err, "opening lock %s", p);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		msb_info("waiting for another pull of %s", reference);
		if (flock(fd, LOCK_EX) < 0) {
			msb_err_sys(err, "locking %s", p);
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* The store-wide lock: pulls hold it shared, rm/prune exclusively (they delete files a
 * pull in progress may be about to record). */
static int lock_store(struct oci_store *st, int how, struct msb_err *err)
{
	char p[4400];
	snprintf(p, sizeof(p), "%s/locks/store.lock", st->dir);
	int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return msb_err_sys(err, "opening lock %s", p);
	if (flock(fd, how) < 0) {
		msb_err_sys(err, "locking %s", p);
		close(fd);
		return -1;
	}
	return fd;
}

int oci_store_lock_shared(struct oci_store *st, struct msb_err *err)
{
	return lock_store(st, LOCK_SH, err);
}

static char *strv_json(char *const *v, bool null_if_absent)
{
	if (!v && null_if_absent)
		return NULL;
	json_t *a = json_array();
	for (size_t i = 0; v && v[i]; i++)
		json_array_append_new(a, json_string(v[i]));
	char *s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

static char **json_strv(const char *s)
{
	if (!s)
		return NULL;
	json_t *a = json_loads(s, 0, NULL);
	size_t n = json_is_array(a) ? json_array_size(a) : 0;
	char **v = calloc(n + 1, sizeof(*v));
	for (size_t i = 0; v && i < n; i++)
		v[i] = strdup(json_string_value(json_array_get(a, i)) ?: "");
	if (a)
		json_decref(a);
	return v;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

int oci_store_commit(struct oci_store *st, const struct oci_image_record *rec, struct msb_err *err)
{
	struct oci_image_config cfg = {0};
	if (rec->config_json && oci_config_parse(rec->config_json, rec->config_len, &cfg, err) < 0)
		return msb_err_wrap(err, "recording %s", rec->reference);
	_cleanup_free_ char *env = strv_json(cfg.env, false);
	_cleanup_free_ char *cmd = strv_json(cfg.cmd, true);
	_cleanup_free_ char *ep = strv_json(cfg.entrypoint, true);
	_cleanup_free_ char *ports = strv_json(cfg.exposed_ports, false);
	uint64_t size = 0;
	for (size_t i = 0; i < rec->n_layers; i++)
		size += rec->layers[i].size;
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *s = NULL;
	int ret = -1;
	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		db_err(st, err, "starting a transaction");
		goto out;
	}
	/* Replace the manifest's rows wholesale (layers/configs cascade). */
	if (sqlite3_prepare_v2(
		    st->db,
		    "INSERT INTO manifests(digest, media_type, json, config_digest, size,"
		    " rootfs_path, rootfs_format, created_at) VALUES(?,?,?,?,?,?,?,?)"
		    " ON CONFLICT(digest) DO UPDATE SET rootfs_path=excluded.rootfs_path,"
		    " rootfs_format=excluded.rootfs_format",
		    -1, &s, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(s, 1, rec->manifest_digest, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, rec->media_type ? rec->media_type : "", -1, SQLITE_TRANSIENT);
	if (rec->manifest_json)
		sqlite3_bind_blob(s, 3, rec->manifest_json, (int)rec->manifest_len,
				  SQLITE_TRANSIENT);
	bind_text(s, 4, rec->config_digest);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)size);
	sqlite3_bind_text(s, 6, rec->rootfs_path, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 7, rec->rootfs_format, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 8, now);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db, "DELETE FROM layers WHERE manifest_digest=?", -1, &s,
			       NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(s, 1, rec->manifest_digest, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT INTO layers(manifest_digest, position, digest, media_type,"
			       " size) VALUES(?,?,?,?,?)",
			       -1, &s, NULL) != SQLITE_OK)
		goto dberr;
	for (size_t i = 0; i < rec->n_layers; i++) {
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, rec->manifest_digest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)i);
		sqlite3_bind_text(s, 3, rec->layers[i].digest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 4, rec->layers[i].media_type, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)rec->layers[i].size);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto dberr;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT OR REPLACE INTO configs(manifest_digest, digest, json, os,"
			       " architecture, env_json, cmd_json, entrypoint_json, working_dir,"
			       " user, exposed_ports_json) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
			       -1, &s, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(s, 1, rec->manifest_digest, -1, SQLITE_TRANSIENT);
	bind_text(s, 2, rec->config_digest);
	if (rec->config_json)
		sqlite3_bind_blob(s, 3, rec->config_json, (int)rec->config_len, SQLITE_TRANSIENT);
	bind_text(s, 4, cfg.os);
	bind_text(s, 5, cfg.architecture);
	bind_text(s, 6, env ? env : "[]");
	bind_text(s, 7, cmd);
	bind_text(s, 8, ep);
	bind_text(s, 9, cfg.working_dir);
	bind_text(s, 10, cfg.user);
	bind_text(s, 11, ports ? ports : "[]");
	if (sqlite3_step(s) != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT OR REPLACE INTO images(reference, manifest_digest,"
			       " index_digest, pulled_at) VALUES(?,?,?,?)",
			       -1, &s, NULL) != SQLITE_OK)
		goto dberr;
	sqlite3_bind_text(s, 1, rec->reference, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, rec->manifest_digest, -1, SQLITE_TRANSIENT);
	bind_text(s, 3, rec->index_digest);
	sqlite3_bind_int64(s, 4, now);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto dberr;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto dberr;
	ret = 0;
	goto out;
dberr:
	db_err(st, err, "recording the image");
	sqlite3_finalize(s);
	s = NULL;
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
out:
	oci_config_release(&cfg);
	return ret;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? strdup((const char *)t) : NULL;
}

void oci_image_free(struct oci_image *img)
{
	if (!img)
		return;
	free(img->reference);
	free(img->manifest_digest);
	free(img->index_digest);
	free(img->config_digest);
	free(img->media_type);
	free(img->rootfs_path);
	free(img->rootfs_format);
	oci_config_release(&img->config);
	for (size_t i = 0; i < img->n_layers; i++)
		free(img->layers[i].path);
	free(img->layers);
	free(img);
}

#define IMAGE_COLUMNS                                                                \
	"SELECT i.reference, i.manifest_digest, i.index_digest, m.config_digest,"    \
	" m.media_type, m.rootfs_path, m.rootfs_format, m.size, i.pulled_at, c.os,"  \
	" c.architecture, c.env_json, c.cmd_json, c.entrypoint_json, c.working_dir," \
	" c.user, c.exposed_ports_json"                                              \
	" FROM images i JOIN manifests m ON m.digest = i.manifest_digest"            \
	" LEFT JOIN configs c ON c.manifest_digest = i.manifest_digest "

static struct oci_image *row_image(struct oci_store *st, sqlite3_stmt *s)
{
	struct oci_image *img = calloc(1, sizeof(*img));
	if (!img)
		return NULL;
	img->reference = col_dup(s, 0);
	img->manifest_digest = col_dup(s, 1);
	img->index_digest = col_dup(s, 2);
	img->config_digest = col_dup(s, 3);
	img->media_type = col_dup(s, 4);
	img->rootfs_path = col_dup(s, 5);
	img->rootfs_format = col_dup(s, 6);
	img->size = (uint64_t)sqlite3_column_int64(s, 7);
	img->pulled_at = sqlite3_column_int64(s, 8);
	img->config.os = col_dup(s, 9);
	img->config.architecture = col_dup(s, 10);
	img->config.env = json_strv((const char *)sqlite3_column_text(s, 11));
	if (!img->config.env)
		img->config.env = calloc(1, sizeof(char *));
	img->config.cmd = json_strv((const char *)sqlite3_column_text(s, 12));
	img->config.entrypoint = json_strv((const char *)sqlite3_column_text(s, 13));
	img->config.working_dir = col_dup(s, 14);
	img->config.user = col_dup(s, 15);
	img->config.exposed_ports = json_strv((const char *)sqlite3_column_text(s, 16));
	if (!img->config.exposed_ports)
		img->config.exposed_ports = calloc(1, sizeof(char *));
	if (!img->reference || !img->manifest_digest || !img->rootfs_path || !img->config.env ||
	    !img->config.exposed_ports) {
		oci_image_free(img);
		return NULL;
	}
	/* Layers, in manifest order. */
	sqlite3_stmt *l = NULL;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT digest, media_type, size FROM layers WHERE manifest_digest=?"
			       " ORDER BY position",
			       -1, &l, NULL) != SQLITE_OK) {
		oci_image_free(img);
		return NULL;
	}
	sqlite3_bind_text(l, 1, img->manifest_digest, -1, SQLITE_TRANSIENT);
	size_t cap = 0;
	while (sqlite3_step(l) == SQLITE_ROW) {
		if (img->n_layers == cap) {
			cap = cap ? cap * 2 : 8;
			struct oci_layer *v = realloc(img->layers, cap * sizeof(*v));
			if (!v)
				break;
			img->layers = v;
		}
		struct oci_layer *ly = &img->layers[img->n_layers];
		memset(ly, 0, sizeof(*ly));
		snprintf(ly->digest, sizeof(ly->digest), "%s",
			 (const char *)sqlite3_column_text(l, 0) ?: "");
		snprintf(ly->media_type, sizeof(ly->media_type), "%s",
			 (const char *)sqlite3_column_text(l, 1) ?: "");
		ly->size = (uint64_t)sqlite3_column_int64(l, 2);
		char p[4400];
		oci_store_blob_path(st, ly->digest, p, sizeof(p));
		ly->path = strdup(p);
		img->n_layers++;
	}
	sqlite3_finalize(l);
	return img;
}

static bool is_hex_prefix(const char *s)
{
	if (strncmp(s, "sha256:", 7) == 0)
		s += 7;
	size_t n = strlen(s);
	if (n < 12 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

int oci_store_get(struct oci_store *st, const char *ref, struct oci_image **out,
		  struct msb_err *err)
{
	*out = NULL;
	char key[OCI_REF_STR_MAX + 1];
	struct oci_ref r;
	struct msb_err perr = {0};
	bool by_ref = oci_ref_parse(ref, &r, &perr) == 0;
	bool by_digest = is_hex_prefix(ref);
	if (!by_ref && !by_digest) {
		*err = perr;
		return -1;
	}
	if (by_ref)
		oci_ref_format(&r, key, sizeof(key));
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db,
			       IMAGE_COLUMNS
			       "WHERE i.reference = ?1 OR (?2 IS NOT NULL AND"
			       " i.manifest_digest LIKE ?2) ORDER BY i.reference = ?1 DESC",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "looking up an image");
	bind_text(s, 1, by_ref ? key : "");
	char like[80];
	if (by_digest) {
		snprintf(like, sizeof(like), "sha256:%s%%",
			 strncmp(ref, "sha256:", 7) == 0 ? ref + 7 : ref);
		bind_text(s, 2, like);
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = row_image(st, s);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "image '%s' is not in the store; run `msb pull %s` (or `msb "
				   "image import`)",
				   ref, ref);
	if (!*out)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	if (access((*out)->rootfs_path, R_OK) < 0) {
		oci_image_free(*out);
		*out = NULL;
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "image '%s' is recorded but its root filesystem image is "
				   "missing; run `msb pull %s` again",
				   ref, ref);
	}
	return 0;
}

int oci_store_list(struct oci_store *st, struct oci_image ***out, size_t *n, struct msb_err *err)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, IMAGE_COLUMNS "ORDER BY i.reference", -1, &s, NULL) !=
	    SQLITE_OK)
		return db_err(st, err, "listing images");
	size_t cap = 0;
	struct oci_image **v = NULL;
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			struct oci_image **nv = realloc(v, cap * sizeof(*nv));
			if (!nv)
				break;
			v = nv;
		}
		struct oci_image *img = row_image(st, s);
		if (img)
			v[(*n)++] = img;
	}
	sqlite3_finalize(s);
	*out = v;
	return 0;
}

void oci_image_list_free(struct oci_image **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		oci_image_free(v[i]);
	free(v);
}

char *oci_store_rootfs_for(struct oci_store *st, const char *manifest_digest)
{
	sqlite3_stmt *s = NULL;
	char *p = NULL;
	if (sqlite3_prepare_v2(st->db, "SELECT rootfs_path FROM manifests WHERE digest=?", -1, &s,
			       NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(s, 1, manifest_digest, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW)
		p = col_dup(s, 0);
	sqlite3_finalize(s);
	if (p && access(p, R_OK) < 0) {
		free(p);
		p = NULL;
	}
	return p;
}

/* A set of strings, for garbage collection. */
struct strset {
	char **v;
	size_t n, cap;
};

static void set_add(struct strset *s, const char *x)
{
	if (!x)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n] = strdup(x);
	if (s->v[s->n])
		s->n++;
}

static bool set_has(const struct strset *s, const char *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], x) == 0)
			return true;
	return false;
}

static void set_free(struct strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static uint64_t tree_bytes;
static int rm_entry(const char *p, const struct stat *s, int flag, struct FTW *f)
{
	if (flag == FTW_F || flag == FTW_SL)
		tree_bytes += (uint64_t)s->st_size;
	remove(p);
	return 0;
}

/* rm -rf; the bytes of the files removed.  Only called under the exclusive store lock. */
static uint64_t rm_tree(const char *path)
{
	tree_bytes = 0;
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return tree_bytes;
}

static uint64_t remove_unlisted(const char *dir, const struct strset *keep, bool names_are_paths,
				bool skip_locked)
{
	uint64_t freed = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[4400];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (set_has(keep, names_are_paths ? p : e->d_name))
			continue;
		struct stat stt;
		if (lstat(p, &stt) < 0)
			continue;
		if (S_ISDIR(stt.st_mode) && skip_locked) {
			/* An import's scratch directory left by a crash (tmp/ only). */
			freed += rm_tree(p);
			continue;
		}
		if (!S_ISREG(stt.st_mode))
			continue;
		if (skip_locked) {
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			bool busy = flock(fd, LOCK_EX | LOCK_NB) < 0;
			close(fd);
			if (busy)
				continue;
		}
		if (unlink(p) == 0)
			freed += (uint64_t)stt.st_size;
	}
	closedir(d);
	return freed;
}

static int gc(struct oci_store *st, bool tmp_too, uint64_t *freed, struct msb_err *err)
{
	uint64_t total = 0;
	struct strset blobs = {0}, roots = {0};
	sqlite3_stmt *s = NULL;
	int ret = -1;
	if (sqlite3_exec(st->db,
			 "DELETE FROM manifests WHERE digest NOT IN"
			 " (SELECT manifest_digest FROM images)",
			 NULL, NULL, NULL) != SQLITE_OK) {
		db_err(st, err, "forgetting unused manifests");
		goto out;
	}
	static const char *const q[] = {
		"SELECT manifest_digest FROM images",
		"SELECT index_digest FROM images",
		"SELECT config_digest FROM manifests",
		"SELECT digest FROM layers",
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(q); i++) {
		if (sqlite3_prepare_v2(st->db, q[i], -1, &s, NULL) != SQLITE_OK) {
			db_err(st, err, "collecting garbage");
			goto out;
		}
		while (sqlite3_step(s) == SQLITE_ROW) {
			const char *d = (const char *)sqlite3_column_text(s, 0);
			if (d && strlen(d) > 7)
				set_add(&blobs, d + 7);
		}
		sqlite3_finalize(s);
		s = NULL;
	}
	if (sqlite3_prepare_v2(st->db, "SELECT rootfs_path FROM manifests", -1, &s, NULL) !=
	    SQLITE_OK) {
		db_err(st, err, "collecting garbage");
		goto out;
	}
	while (sqlite3_step(s) == SQLITE_ROW)
		set_add(&roots, (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	s = NULL;
	char p[4400];
	snprintf(p, sizeof(p), "%s/blobs/sha256", st->dir);
	total += remove_unlisted(p, &blobs, false, false);
	snprintf(p, sizeof(p), "%s/rootfs", st->dir);
	total += remove_unlisted(p, &roots, true, false);
	if (tmp_too) {
		struct strset none = {0};
		snprintf(p, sizeof(p), "%s/tmp", st->dir);
		total += remove_unlisted(p, &none, false, true);
	}
	ret = 0;
out:
	set_free(&blobs);
	set_free(&roots);
	if (freed)
		*freed = total;
	return ret;
}

int oci_store_remove(struct oci_store *st, const char *ref, struct msb_err *err)
{
	struct oci_image *img = NULL;
	if (oci_store_get(st, ref, &img, err) < 0) {
		/* A row whose rootfs vanished can still be removed. */
		if (err->kind != MSB_EK_NOT_FOUND || !strstr(err->msg, "recorded"))
			return -1;
	}
	char key[OCI_REF_STR_MAX + 1] = "";
	struct oci_ref r;
	struct msb_err perr;
	if (img)
		snprintf(key, sizeof(key), "%s", img->reference);
	else if (oci_ref_parse(ref, &r, &perr) == 0)
		oci_ref_format(&r, key, sizeof(key));
	oci_image_free(img);
	_cleanup_close_ int lk = lock_store(st, LOCK_EX, err);
	if (lk < 0)
		return -1;
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, "DELETE FROM images WHERE reference=?", -1, &s, NULL) !=
	    SQLITE_OK)
		return db_err(st, err, "removing an image");
	sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return db_err(st, err, "removing an image");
	return gc(st, false, NULL, err);
}

int oci_store_prune(struct oci_store *st, uint64_t *freed, struct msb_err *err)
{
	_cleanup_close_ int lk = lock_store(st, LOCK_EX, err);
	if (lk < 0)
		return -1;
	return gc(st, true, freed, err);
}
