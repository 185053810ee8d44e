#include "oci/pull.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/io.h"
#include "common/log.h"
#include "oci/digest.h"
#include "rootfs/rootfs.h"

static void status(const struct oci_pull_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void status(const struct oci_pull_opts *o, const char *fmt, ...)
{
	if (!o || !o->status)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	o->status(o->ctx, buf);
}

int oci_store_put_blob(struct oci_store *st, const char *digest, const void *data, size_t len,
		       struct msb_err *err)
{
	char dest[4400], tmp[4400];
	oci_store_blob_path(st, digest, dest, sizeof(dest));
	if (access(dest, F_OK) == 0)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s/tmp/put.XXXXXX", oci_store_dir(st));
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	if (msb_write_all(fd, data, len) < 0) {
		msb_err_sys(err, "writing %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || rename(tmp, dest) < 0) {
		msb_err_sys(err, "storing blob %s", digest);
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The platform manifest for `target`: resolves an index.  Fills doc (the manifest),
 * index_digest ("" when there was no index). */
static int resolve(struct oci_store *st, struct oci_registry *r, const char *target,
		   const struct oci_pull_opts *o, struct oci_doc *doc,
		   char index_digest[OCI_DIGEST_MAX + 1], struct msb_err *err)
{
	index_digest[0] = '\0';
	if (oci_registry_get_manifest(r, target, doc, err) < 0)
		return -1;
	enum oci_doc_kind kind;
	if (oci_doc_kind(doc->content_type, doc->body, doc->len, &kind, err) < 0)
		return -1;
	if (kind == OCI_DOC_MANIFEST)
		return 0;
	struct oci_index idx;
	if (oci_index_parse(doc->body, doc->len, &idx, err) < 0)
		return -1;
	const char *os = o && o->os ? o->os : "linux";
	const char *arch = o && o->arch ? o->arch : "amd64";
	const struct oci_descriptor *d = oci_index_select(&idx, os, arch, NULL, err);
	if (!d) {
		oci_index_release(&idx);
		return -1;
	}
	char want[OCI_DIGEST_MAX + 1];
	snprintf(want, sizeof(want), "%s", d->digest);
	oci_index_release(&idx);
	if (oci_store_put_blob(st, doc->digest, doc->body, doc->len, err) < 0)
		return -1;
	snprintf(index_digest, OCI_DIGEST_MAX + 1, "%s", doc->digest);
	status(o, "index %s: %s/%s is %s", index_digest, os, arch, want);
	oci_doc_release(doc);
	if (oci_registry_get_manifest(r, want, doc, err) < 0)
		return -1;
	if (oci_doc_kind(doc->content_type, doc->body, doc->len, &kind, err) < 0)
		return -1;
	if (kind != OCI_DOC_MANIFEST)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the index entry %s is itself an index; nested indexes are not "
				   "supported",
				   want);
	return 0;
}

static bool recorded_as(struct oci_store *st, const char *key, const char *manifest_digest)
{
	struct oci_image *img = NULL;
	struct msb_err e = {0};
	if (oci_store_get(st, key, &img, &e) < 0)
		return false;
	bool same = strcmp(img->manifest_digest, manifest_digest) == 0 &&
		    strcmp(img->reference, key) == 0;
	oci_image_free(img);
	return same;
}

int oci_finish_image(struct oci_store *st, const char *key, const struct oci_doc *doc,
		     const char *index_digest, const char *from_dir, const struct oci_pull_opts *o,
		     struct oci_image **out, struct msb_err *err)
{
	struct oci_manifest man = {0};
	char *cfg = NULL;
	size_t cfg_len = 0;
	char *rootfs = NULL;
	struct rootfs_layer *rl = NULL;
	int ret = -1;
	if (oci_manifest_parse(doc->body, doc->len, &man, err) < 0)
		goto out;
	if (oci_store_put_blob(st, doc->digest, doc->body, doc->len, err) < 0)
		goto out;
	char blob[4400];
	oci_store_blob_path(st, man.config.digest, blob, sizeof(blob));
	if (msb_read_file(blob, OCI_MANIFEST_MAX_BYTES, MSB_EK_CORRUPT, &cfg, &cfg_len, err) < 0)
		goto out;
	struct oci_image_config conf;
	if (oci_config_parse(cfg, cfg_len, &conf, err) < 0) {
		msb_err_wrap(err, "image config %s", man.config.digest);
		goto out;
	}
	size_t n_diff = conf.n_diff_ids;
	oci_config_release(&conf);
	if (n_diff != man.n_layers) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "the image config lists %zu layers but the manifest has %zu", n_diff,
			    man.n_layers);
		goto out;
	}
	rootfs = oci_store_rootfs_for(st, doc->digest);
	if (!rootfs) {
		char p[4400];
		oci_store_rootfs_path(st, doc->digest, p, sizeof(p));
		rootfs = strdup(p);
		rl = calloc(man.n_layers + 1, sizeof(*rl));
		char(*lp)[4400] = calloc(man.n_layers + 1, sizeof(*lp));
		if (!rootfs || !rl || !lp) {
			free(lp);
			msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < man.n_layers; i++) {
			oci_store_blob_path(st, man.layers[i].digest, lp[i], sizeof(lp[i]));
			rl[i].path = lp[i];
			rl[i].media_type = man.layers[i].media_type;
		}
		status(o, "building the root filesystem (%s) from %zu layers", rootfs_format(),
		       man.n_layers);
		int rc = from_dir ? rootfs_build_from_dir(from_dir, rootfs, err)
				  : rootfs_build(rl, man.n_layers, rootfs, err);
		free(lp);
		if (rc < 0) {
			msb_err_wrap(err, "building the root filesystem of %s", key);
			goto out;
		}
	}
	struct oci_image_record rec = {
		.reference = key,
		.manifest_digest = doc->digest,
		.index_digest = index_digest,
		.media_type = man.media_type[0] ? man.media_type : OCI_MT_OCI_MANIFEST,
		.manifest_json = doc->body,
		.manifest_len = doc->len,
		.config_digest = man.config.digest,
		.config_json = cfg,
		.config_len = cfg_len,
		.layers = man.layers,
		.n_layers = man.n_layers,
		.rootfs_path = rootfs,
		.rootfs_format = rootfs_format(),
	};
	if (oci_store_commit(st, &rec, err) < 0)
		goto out;
	ret = out ? oci_store_get(st, key, out, err) : 0;
out:
	free(cfg);
	free(rootfs);
	free(rl);
	oci_manifest_release(&man);
	return ret;
}

int oci_pull(struct oci_store *st, const char *ref_s, const struct oci_pull_opts *o,
	     struct oci_image **out, bool *up_to_date, struct msb_err *err)
{
	if (out)
		*out = NULL;
	if (up_to_date)
		*up_to_date = false;
	struct oci_ref ref;
	char key[OCI_REF_STR_MAX + 1];
	if (oci_ref_parse(ref_s, &ref, err) < 0)
		return -1;
	oci_ref_format(&ref, key, sizeof(key));
	struct oci_settings settings;
	if (oci_settings_load(&settings, oci_store_home(st), err) < 0)
		return -1;
	struct oci_registry reg = {0};
	struct oci_doc doc = {0};
	struct oci_manifest man = {0};
	struct oci_fetch *items = NULL;
	char **paths = NULL;
	size_t n_items = 0;
	int ret = -1;
	int store_lock = -1, ref_lock = -1;
	store_lock = oci_store_lock_shared(st, err);
	if (store_lock < 0)
		goto out;
	ref_lock = oci_store_lock_ref(st, key, err);
	if (ref_lock < 0)
		goto out;
	if (oci_registry_open(&reg, &settings, &ref, err) < 0)
		goto out;
	char index_digest[OCI_DIGEST_MAX + 1];
	if (resolve(st, &reg, oci_ref_target(&ref), o, &doc, index_digest, err) < 0)
		goto out;
	status(o, "%s: manifest %s", key, doc.digest);
	if (recorded_as(st, key, doc.digest)) {
		if (up_to_date)
			*up_to_date = true;
		status(o, "%s is up to date", key);
		ret = out ? oci_store_get(st, key, out, err) : 0;
		goto out;
	}
	if (oci_manifest_parse(doc.body, doc.len, &man, err) < 0)
		goto out;
	if (oci_store_put_blob(st, doc.digest, doc.body, doc.len, err) < 0)
		goto out;
	/* The config and the distinct layers. */
	items = calloc(man.n_layers + 1, sizeof(*items));
	paths = calloc(2 * (man.n_layers + 1), sizeof(*paths));
	if (!items || !paths) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i <= man.n_layers; i++) {
		const struct oci_descriptor *d = i == 0 ? &man.config : &man.layers[i - 1];
		bool dup = false;
		for (size_t j = 0; j < n_items; j++)
			if (strcmp(items[j].digest, d->digest) == 0)
				dup = true;
		if (dup)
			continue;
		if (i == 0 && d->size > OCI_MANIFEST_MAX_BYTES) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "the image config is too large (%llu bytes)",
				    (unsigned long long)d->size);
			goto out;
		}
		char p[4400];
		struct oci_fetch *f = &items[n_items];
		snprintf(f->digest, sizeof(f->digest), "%s", d->digest);
		f->size = d->size;
		oci_store_blob_path(st, d->digest, p, sizeof(p));
		paths[2 * n_items] = strdup(p);
		oci_store_partial_path(st, d->digest, p, sizeof(p));
		paths[2 * n_items + 1] = strdup(p);
		if (!paths[2 * n_items] || !paths[2 * n_items + 1]) {
			msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			goto out;
		}
		f->dest = paths[2 * n_items];
		f->partial = paths[2 * n_items + 1];
		n_items++;
	}
	if (oci_registry_fetch(&reg, items, n_items, o ? o->progress : NULL, o ? o->ctx : NULL,
			       err) < 0)
		goto out;
	if (oci_finish_image(st, key, &doc, index_digest[0] ? index_digest : NULL, NULL, o, out,
			     err) < 0)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		msb_err_wrap(err, "pulling %s", key);
	for (size_t i = 0; paths && i < 2 * n_items; i++)
		free(paths[i]);
	free(paths);
	free(items);
	oci_manifest_release(&man);
	oci_doc_release(&doc);
	oci_registry_close(&reg);
	oci_settings_release(&settings);
	if (ref_lock >= 0)
		close(ref_lock);
	if (store_lock >= 0)
		close(store_lock);
	return ret;
}

int oci_image_ensure(struct oci_store *st, const char *ref, const struct oci_pull_opts *opts,
		     struct oci_image **out, struct msb_err *err)
{
	if (oci_store_get(st, ref, out, err) == 0)
		return 0;
	if (err->kind != MSB_EK_NOT_FOUND)
		return -1;
	msb_err_clear(err);
	return oci_pull(st, ref, opts, out, NULL, err);
}
