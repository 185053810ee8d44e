#include "oci/import.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "oci/digest.h"
#include "oci/pull.h"
#include "oci/tar.h"

#define ARCHIVE_MAX_BYTES (64ull << 30)

/* Copy `src` into the store as blob `digest` (NULL: computed), verifying it. */
static int copy_blob(struct oci_store *st, const char *src, const char *digest,
		     char out_digest[OCI_DIGEST_MAX + 1], uint64_t *out_size, struct msb_err *err)
{
	char tmp[4400], dest[4400];
	snprintf(tmp, sizeof(tmp), "%s/tmp/import.XXXXXX", oci_store_dir(st));
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return msb_err_sys(err, "opening %s", src);
	_cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0)
		return msb_err_sys(err, "creating %s", tmp);
	struct oci_hasher *h = oci_hasher_new();
	if (!h) {
		unlink(tmp);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	}
	char buf[1 << 16];
	uint64_t size = 0;
	int ret = -1;
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			msb_err_sys(err, "reading %s", src);
			goto out;
		}
		if (r == 0)
			break;
		oci_hasher_update(h, buf, (size_t)r);
		size += (uint64_t)r;
		if (msb_write_all(out, buf, (size_t)r) < 0) {
			msb_err_sys(err, "writing %s", tmp);
			goto out;
		}
	}
	char got[OCI_DIGEST_MAX + 1];
	oci_hasher_final(h, got);
	if (digest && strcmp(got, digest) != 0) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s should have digest %s but has %s", src,
			    digest, got);
		goto out;
	}
	oci_store_blob_path(st, got, dest, sizeof(dest));
	if (fchmod(out, 0644) < 0 || fsync(out) < 0 || rename(tmp, dest) < 0) {
		msb_err_sys(err, "storing %s", src);
		goto out;
	}
	if (out_digest)
		memcpy(out_digest, got, sizeof(got));
	if (out_size)
		*out_size = size;
	ret = 0;
out:
	if (ret < 0)
		unlink(tmp);
	oci_hasher_free(h);
	return ret;
}

static void layout_blob(const char *layout, const char *digest, char *buf, size_t len)
{
	snprintf(buf, len, "%s/blobs/sha256/%s", layout, digest + 7);
}

/* An OCI image layout directory. */
static int import_layout(struct oci_store *st, const char *layout, const char *key,
			 struct oci_image **out, struct msb_err *err)
{
	char p[4400];
	snprintf(p, sizeof(p), "%s/index.json", layout);
	struct oci_doc doc = {0};
	char index_digest[OCI_DIGEST_MAX + 1] = "";
	int ret = -1;
	if (msb_read_file(p, OCI_MANIFEST_MAX_BYTES, MSB_EK_CORRUPT, &doc.body, &doc.len, err) < 0)
		return -1;
	/* index.json is itself an index; follow nested indexes to one manifest. */
	for (int depth = 0;; depth++) {
		enum oci_doc_kind kind;
		if (depth > 4) {
			msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: indexes nest too deeply", layout);
			goto out;
		}
		if (depth > 0 && oci_doc_kind(NULL, doc.body, doc.len, &kind, err) < 0)
			goto out;
		if (depth > 0 && kind == OCI_DOC_MANIFEST)
			break;
		struct oci_index idx;
		if (oci_index_parse(doc.body, doc.len, &idx, err) < 0)
			goto out;
		const struct oci_descriptor *d = NULL;
		if (idx.n == 1)
			d = &idx.manifests[0];
		else
			d = oci_index_select(&idx, "linux", "amd64", NULL, err);
		if (!d) {
			oci_index_release(&idx);
			goto out;
		}
		char want[OCI_DIGEST_MAX + 1];
		snprintf(want, sizeof(want), "%s", d->digest);
		oci_index_release(&idx);
		if (depth > 0) {
			oci_sha256_buf(doc.body, doc.len, index_digest);
			if (oci_store_put_blob(st, index_digest, doc.body, doc.len, err) < 0)
				goto out;
		}
		oci_doc_release(&doc);
		layout_blob(layout, want, p, sizeof(p));
		if (msb_read_file(p, OCI_MANIFEST_MAX_BYTES, MSB_EK_CORRUPT, &doc.body, &doc.len,
				  err) < 0)
			goto out;
		oci_sha256_buf(doc.body, doc.len, doc.digest);
		if (strcmp(doc.digest, want) != 0) {
			msb_err_set(err, MSB_EK_CORRUPT, 0, "%s does not hash to its name", p);
			goto out;
		}
	}
	struct oci_manifest man;
	if (oci_manifest_parse(doc.body, doc.len, &man, err) < 0)
		goto out;
	for (size_t i = 0; i <= man.n_layers; i++) {
		const char *d = i == 0 ? man.config.digest : man.layers[i - 1].digest;
		layout_blob(layout, d, p, sizeof(p));
		if (copy_blob(st, p, d, NULL, NULL, err) < 0) {
			oci_manifest_release(&man);
			goto out;
		}
	}
	oci_manifest_release(&man);
	ret = oci_finish_image(st, key, &doc, index_digest[0] ? index_digest : NULL, NULL, NULL,
			       out, err);
out:
	oci_doc_release(&doc);
	return ret;
}

static const char *sniff_layer_type(const char *path)
{
	unsigned char m[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, m, sizeof(m)) < 0)
			m[0] = 0;
		close(fd);
	}
	if (m[0] == 0x1f && m[1] == 0x8b)
		return OCI_MT_OCI_LAYER_GZIP;
	if (m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return OCI_MT_OCI_LAYER_ZSTD;
	return OCI_MT_OCI_LAYER;
}

/* A path inside an extracted archive, refusing escapes. */
static int inside(const char *root, const char *rel, char *buf, size_t len, struct msb_err *err)
{
	char clean[4096];
	if (!rel || oci_tar_clean_name(rel, strlen(rel), clean, sizeof(clean)) < 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "archive names a bad path '%s'",
				   rel ? rel : "(none)");
	snprintf(buf, len, "%s/%s", root, clean);
	return 0;
}

/* A docker-archive (docker save) extracted at `root`. */
static int import_docker_archive(struct oci_store *st, const char *root, const char *key,
				 struct oci_image **out, struct msb_err *err)
{
	char p[4400];
	snprintf(p, sizeof(p), "%s/manifest.json", root);
	_cleanup_free_ char *text = NULL;
	size_t len;
	if (msb_read_file(p, OCI_MANIFEST_MAX_BYTES, MSB_EK_CORRUPT, &text, &len, err) < 0)
		return -1;
	json_t *j = json_loadb(text, len, 0, NULL);
	json_t *e = json_is_array(j) ? json_array_get(j, 0) : NULL;
	json_t *layers = e ? json_object_get(e, "Layers") : NULL;
	const char *cfg = e ? json_string_value(json_object_get(e, "Config")) : NULL;
	int ret = -1;
	json_t *m = NULL;
	if (!cfg || !json_is_array(layers) || json_array_size(layers) > OCI_MAX_LAYERS) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "manifest.json of the docker archive has no Config/Layers");
		goto out;
	}
	if (json_array_size(j) > 1)
		msb_warn("the docker archive holds %zu images; importing the first",
			 json_array_size(j));
	char d[OCI_DIGEST_MAX + 1];
	uint64_t size;
	if (inside(root, cfg, p, sizeof(p), err) < 0 || copy_blob(st, p, NULL, d, &size, err) < 0)
		goto out;
	m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[]}", "schemaVersion", 2, "mediaType",
		      OCI_MT_OCI_MANIFEST, "config", "mediaType", OCI_MT_OCI_CONFIG, "digest", d,
		      "size", (json_int_t)size, "layers");
	if (!m) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *l = json_string_value(json_array_get(layers, i));
		if (inside(root, l, p, sizeof(p), err) < 0 ||
		    copy_blob(st, p, NULL, d, &size, err) < 0)
			goto out;
		json_array_append_new(json_object_get(m, "layers"),
				      json_pack("{s:s, s:s, s:I}", "mediaType", sniff_layer_type(p),
						"digest", d, "size", (json_int_t)size));
	}
	struct oci_doc doc = {0};
	doc.body = json_dumps(m, JSON_COMPACT);
	if (!doc.body) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		goto out;
	}
	doc.len = strlen(doc.body);
	oci_sha256_buf(doc.body, doc.len, doc.digest);
	ret = oci_finish_image(st, key, &doc, NULL, NULL, NULL, out, err);
	oci_doc_release(&doc);
out:
	if (m)
		json_decref(m);
	if (j)
		json_decref(j);
	return ret;
}

/* What a directory tree looks like: one line per entry (path, type+mode, owner, size,
 * mtime, ctime (which moves on chmod, chown and xattr changes), device, link target). */
struct lines {
	char **v;
	size_t n, cap;
};

static int walk(const char *root, const char *rel, struct lines *l, int depth, struct msb_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel);
	DIR *d = opendir(path);
	if (!d)
		return msb_err_sys(err, "reading %s", path);
	if (depth > 256) {
		closedir(d);
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s: directories nest too deeply", path);
	}
	struct dirent *e;
	int ret = 0;
	while (ret == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", root, sub);
		struct stat st;
		if (lstat(p, &st) < 0) {
			ret = msb_err_sys(err, "stat %s", p);
			break;
		}
		char target[PATH_MAX] = "";
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(p, target, sizeof(target) - 1);
			target[n > 0 ? n : 0] = '\0';
		}
		char *line = NULL;
		if (asprintf(&line, "%s%c%o %u %u %lld %lld.%09ld %lld.%09ld %llu %s", sub, 0,
			     (unsigned)st.st_mode, (unsigned)st.st_uid, (unsigned)st.st_gid,
			     (long long)st.st_size, (long long)st.st_mtim.tv_sec,
			     st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec,
			     (unsigned long long)st.st_rdev, target) < 0) {
			ret = msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			break;
		}
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 256;
			char **v = realloc(l->v, cap * sizeof(*v));
			if (!v) {
				free(line);
				ret = msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
				break;
			}
			l->v = v;
			l->cap = cap;
		}
		l->v[l->n++] = line;
		if (S_ISDIR(st.st_mode))
			ret = walk(root, sub, l, depth + 1, err);
	}
	closedir(d);
	return ret;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sha256 over the sorted entry lines (plus the root's own metadata): the same tree gives
 * the same fingerprint, so an unchanged directory maps to the same manifest and its root
 * filesystem image is reused instead of rebuilt. */
static int tree_fingerprint(const char *root, char out[OCI_DIGEST_MAX + 1], struct msb_err *err)
{
	struct lines l = {0};
	int ret = walk(root, "", &l, 0, err);
	struct oci_hasher *h = ret == 0 ? oci_hasher_new() : NULL;
	if (ret == 0 && !h)
		ret = msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	if (ret == 0) {
		qsort(l.v, l.n, sizeof(*l.v), cmp_str);
		struct stat st;
		if (stat(root, &st) == 0) {
			char self[64];
			snprintf(self, sizeof(self), "%o %u %u", (unsigned)st.st_mode,
				 (unsigned)st.st_uid, (unsigned)st.st_gid);
			oci_hasher_update(h, self, strlen(self) + 1);
		}
		for (size_t i = 0; i < l.n; i++) {
			size_t a = strlen(l.v[i]);
			oci_hasher_update(h, l.v[i], a + 1 + strlen(l.v[i] + a + 1) + 1);
		}
		oci_hasher_final(h, out);
	}
	oci_hasher_free(h);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	return ret;
}

/* A plain root filesystem directory: a synthetic manifest with no layers, whose digest
 * depends on the directory's path and fingerprint only. */
static int import_rootfs_dir(struct oci_store *st, const char *dir, const char *key,
			     struct oci_image **out, struct msb_err *err)
{
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return msb_err_sys(err, "resolving %s", dir);
	char fp[OCI_DIGEST_MAX + 1];
	if (tree_fingerprint(real, fp, err) < 0)
		return -1;
	json_t *cfg = json_pack("{s:s, s:s, s:{s:[s]}, s:{s:s, s:[]}}", "architecture", "amd64",
				"os", "linux", "config", "Env",
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"rootfs", "type", "layers", "diff_ids");
	_cleanup_free_ char *cfg_s = cfg ? json_dumps(cfg, JSON_COMPACT) : NULL;
	if (cfg)
		json_decref(cfg);
	if (!cfg_s)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	char cd[OCI_DIGEST_MAX + 1];
	oci_sha256_buf(cfg_s, strlen(cfg_s), cd);
	if (oci_store_put_blob(st, cd, cfg_s, strlen(cfg_s), err) < 0)
		return -1;
	json_t *m = json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:[], s:{s:s, s:s}}", "schemaVersion",
			      2, "mediaType", OCI_MT_OCI_MANIFEST, "config", "mediaType",
			      OCI_MT_OCI_CONFIG, "digest", cd, "size", (json_int_t)strlen(cfg_s),
			      "layers", "annotations", "dev.microsandbox.source", real,
			      "dev.microsandbox.tree", fp);
	struct oci_doc doc = {0};
	doc.body = m ? json_dumps(m, JSON_COMPACT) : NULL;
	if (m)
		json_decref(m);
	if (!doc.body)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	doc.len = strlen(doc.body);
	oci_sha256_buf(doc.body, doc.len, doc.digest);
	int r = oci_finish_image(st, key, &doc, NULL, real, NULL, out, err);
	oci_doc_release(&doc);
	return r;
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char p[8192];
			snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
			struct stat s;
			if (lstat(p, &s) == 0 && S_ISDIR(s.st_mode))
				rm_rf(p);
			else
				unlink(p);
		}
		closedir(d);
	}
	rmdir(path);
}

int oci_import(struct oci_store *st, const char *path, const char *name, struct oci_image **out,
	       struct msb_err *err)
{
	if (out)
		*out = NULL;
	struct oci_ref ref;
	char key[OCI_REF_STR_MAX + 1];
	if (oci_ref_parse(name, &ref, err) < 0)
		return -1;
	oci_ref_format(&ref, key, sizeof(key));
	struct stat s;
	if (stat(path, &s) < 0)
		return msb_err_set(err, MSB_EK_NOT_FOUND, errno, "%s", path);
	int lk = oci_store_lock_shared(st, err);
	if (lk < 0)
		return -1;
	int r = -1;
	char probe[4400];
	if (S_ISDIR(s.st_mode)) {
		snprintf(probe, sizeof(probe), "%s/oci-layout", path);
		if (access(probe, F_OK) == 0)
			r = import_layout(st, path, key, out, err);
		else
			r = import_rootfs_dir(st, path, key, out, err);
	} else if (S_ISREG(s.st_mode) && strcmp(sniff_layer_type(path), OCI_MT_OCI_LAYER) != 0) {
		r = msb_err_set(err, MSB_EK_USAGE, 0,
				"%s is compressed; decompress it first (gunzip / unzstd): archives "
				"are read as plain tar",
				path);
	} else if (S_ISREG(s.st_mode)) {
		char tmp[4400];
		snprintf(tmp, sizeof(tmp), "%s/tmp/archive.XXXXXX", oci_store_dir(st));
		if (!mkdtemp(tmp)) {
			r = msb_err_sys(err, "creating %s", tmp);
		} else {
			if (oci_tar_extract(path, tmp, ARCHIVE_MAX_BYTES, err) == 0) {
				snprintf(probe, sizeof(probe), "%s/oci-layout", tmp);
				char probe2[4400];
				snprintf(probe2, sizeof(probe2), "%s/manifest.json", tmp);
				if (access(probe, F_OK) == 0)
					r = import_layout(st, tmp, key, out, err);
				else if (access(probe2, F_OK) == 0)
					r = import_docker_archive(st, tmp, key, out, err);
				else
					r = msb_err_set(
						err, MSB_EK_USAGE, 0,
						"%s is neither an OCI archive (no oci-layout) "
						"nor a docker archive (no manifest.json)",
						path);
			}
			rm_rf(tmp);
		}
	} else {
		r = msb_err_set(err, MSB_EK_USAGE, 0,
				"%s is neither a directory nor an archive file", path);
	}
	close(lk);
	if (r < 0)
		msb_err_wrap(err, "importing %s", path);
	return r;
}

int oci_image_from_dir(struct oci_store *st, const char *dir, struct oci_image **out,
		       struct msb_err *err)
{
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return msb_err_set(err, MSB_EK_NOT_FOUND, errno, "root filesystem directory %s",
				   dir);
	struct stat s;
	if (stat(real, &s) < 0 || !S_ISDIR(s.st_mode))
		return msb_err_set(err, MSB_EK_USAGE, 0, "%s is not a directory", dir);
	char d[OCI_DIGEST_MAX + 1], name[64];
	oci_sha256_buf(real, strlen(real), d);
	snprintf(name, sizeof(name), "localhost/dir-%.12s:latest", d + 7);
	return oci_import(st, real, name, out, err);
}
