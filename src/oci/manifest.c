#include "oci/manifest.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"

static void json_decref_p(json_t **j)
{
	if (*j)
		json_decref(*j);
}
#define _cleanup_json_ _cleanup_(json_decref_p)

static json_t *load(const char *json, size_t len, const char *what, struct msb_err *err)
{
	if (len > OCI_MANIFEST_MAX_BYTES) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s is larger than %u bytes", what,
			    OCI_MANIFEST_MAX_BYTES);
		return NULL;
	}
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s is not valid JSON (line %d: %s)", what,
			    je.line, je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		msb_err_set(err, MSB_EK_CORRUPT, 0, "%s is not a JSON object", what);
		return NULL;
	}
	return root;
}

/* Copy an optional string member; -1 when present but not a string or too long. */
static int get_str(json_t *obj, const char *key, char *dst, size_t cap, bool required,
		   const char *what, struct msb_err *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		dst[0] = '\0';
		if (required)
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s has no \"%s\"", what, key);
		return 0;
	}
	if (!json_is_string(v))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: \"%s\" is not a string", what, key);
	size_t n = json_string_length(v);
	const char *s = json_string_value(v);
	if (n >= cap || strlen(s) != n)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: \"%s\" is too long or has a NUL",
				   what, key);
	memcpy(dst, s, n + 1);
	return 0;
}

static int parse_descriptor(json_t *d, struct oci_descriptor *out, const char *what,
			    struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(d))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s is not an object", what);
	if (get_str(d, "mediaType", out->media_type, sizeof(out->media_type), false, what, err) <
		    0 ||
	    get_str(d, "digest", out->digest, sizeof(out->digest), true, what, err) < 0)
		return -1;
	if (!oci_digest_valid(out->digest))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "%s: digest '%s' is not sha256:<64 hex> (only sha256 is "
				   "supported)",
				   what, out->digest);
	json_t *size = json_object_get(d, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "%s: \"size\" is missing or not a non-negative integer", what);
	out->size = (uint64_t)json_integer_value(size);
	json_t *plat = json_object_get(d, "platform");
	if (plat && !json_is_null(plat)) {
		if (!json_is_object(plat))
			return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s: platform is not an object",
					   what);
		if (get_str(plat, "os", out->os, sizeof(out->os), false, what, err) < 0 ||
		    get_str(plat, "architecture", out->architecture, sizeof(out->architecture),
			    false, what, err) < 0 ||
		    get_str(plat, "variant", out->variant, sizeof(out->variant), false, what, err) <
			    0)
			return -1;
	}
	json_t *ann = json_object_get(d, "annotations");
	if (ann && !json_is_null(ann)) {
		if (!json_is_object(ann))
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "%s: annotations is not an object", what);
		if (json_object_get(ann, "vnd.docker.reference.type"))
			out->attestation = true;
	}
	return 0;
}

static int check_schema(json_t *root, const char *what, struct msb_err *err)
{
	json_t *sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "%s has no integer schemaVersion", what);
	if (json_integer_value(sv) != 2)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "%s has schemaVersion %lld; only version 2 is supported (schema "
				   "1 images are deprecated: push the image again with a current "
				   "tool)",
				   what, (long long)json_integer_value(sv));
	return 0;
}

int oci_doc_kind(const char *content_type, const char *json, size_t len, enum oci_doc_kind *out,
		 struct msb_err *err)
{
	char ct[128] = "";
	if (content_type) {
		snprintf(ct, sizeof(ct), "%s", content_type);
		ct[strcspn(ct, "; \t")] = '\0';
	}
	_cleanup_json_ json_t *root = load(json, len, "manifest", err);
	if (!root)
		return -1;
	char mt[128];
	if (get_str(root, "mediaType", mt, sizeof(mt), false, "manifest", err) < 0)
		return -1;
	const char *t = mt[0] ? mt : ct;
	if (strcmp(t, OCI_MT_OCI_INDEX) == 0 || strcmp(t, OCI_MT_DOCKER_LIST) == 0) {
		*out = OCI_DOC_INDEX;
		return 0;
	}
	if (strcmp(t, OCI_MT_OCI_MANIFEST) == 0 || strcmp(t, OCI_MT_DOCKER_MANIFEST) == 0) {
		*out = OCI_DOC_MANIFEST;
		return 0;
	}
	if (strstr(t, "manifest.v1") || strstr(t, "prettyjws"))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the registry sent a Docker schema 1 manifest, which is not "
				   "supported");
	/* No usable type: guess from the shape, as the OCI spec allows. */
	if (json_is_array(json_object_get(root, "manifests"))) {
		*out = OCI_DOC_INDEX;
		return 0;
	}
	if (json_is_array(json_object_get(root, "layers"))) {
		*out = OCI_DOC_MANIFEST;
		return 0;
	}
	return msb_err_set(err, MSB_EK_CORRUPT, 0, "unknown manifest media type '%s'",
			   t[0] ? t : "(none)");
}

bool oci_layer_type_supported(const char *mt)
{
	static const char *const ok[] = {
		OCI_MT_OCI_LAYER,
		OCI_MT_OCI_LAYER_GZIP,
		OCI_MT_OCI_LAYER_ZSTD,
		OCI_MT_DOCKER_LAYER,
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(ok); i++)
		if (strcmp(mt, ok[i]) == 0)
			return true;
	return false;
}

int oci_manifest_parse(const char *json, size_t len, struct oci_manifest *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *root = load(json, len, "manifest", err);
	if (!root || check_schema(root, "manifest", err) < 0)
		return -1;
	if (get_str(root, "mediaType", out->media_type, sizeof(out->media_type), false, "manifest",
		    err) < 0)
		return -1;
	if (out->media_type[0] && strcmp(out->media_type, OCI_MT_OCI_MANIFEST) != 0 &&
	    strcmp(out->media_type, OCI_MT_DOCKER_MANIFEST) != 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "expected an image manifest, got media type '%s'",
				   out->media_type);
	if (parse_descriptor(json_object_get(root, "config"), &out->config, "manifest config",
			     err) < 0)
		return -1;
	if (out->config.media_type[0] && strcmp(out->config.media_type, OCI_MT_OCI_CONFIG) != 0 &&
	    strcmp(out->config.media_type, OCI_MT_DOCKER_CONFIG) != 0)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "this is not a container image: its config has media type '%s'",
				   out->config.media_type);
	json_t *layers = json_object_get(root, "layers");
	if (!json_is_array(layers))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "manifest has no \"layers\" array");
	size_t n = json_array_size(layers);
	if (n > OCI_MAX_LAYERS)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "manifest has %zu layers (at most %d)",
				   n, OCI_MAX_LAYERS);
	out->layers = calloc(n ? n : 1, sizeof(*out->layers));
	if (!out->layers)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char what[48];
		snprintf(what, sizeof(what), "manifest layer %zu", i);
		if (parse_descriptor(json_array_get(layers, i), &out->layers[i], what, err) < 0)
			goto fail;
		const char *mt = out->layers[i].media_type;
		if (!mt[0] || !oci_layer_type_supported(mt)) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "%s has media type '%s', which is not a tar layer (tar, "
				    "tar+gzip or tar+zstd)",
				    what, mt[0] ? mt : "(none)");
			goto fail;
		}
		out->n_layers++;
	}
	return 0;
fail:
	oci_manifest_release(out);
	return -1;
}

void oci_manifest_release(struct oci_manifest *m)
{
	free(m->layers);
	m->layers = NULL;
	m->n_layers = 0;
}

int oci_index_parse(const char *json, size_t len, struct oci_index *out, struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *root = load(json, len, "image index", err);
	if (!root || check_schema(root, "image index", err) < 0)
		return -1;
	json_t *ms = json_object_get(root, "manifests");
	if (!json_is_array(ms))
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "image index has no \"manifests\" array");
	size_t n = json_array_size(ms);
	if (n > OCI_MAX_INDEX)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "image index has %zu entries (at most %d)", n, OCI_MAX_INDEX);
	out->manifests = calloc(n ? n : 1, sizeof(*out->manifests));
	if (!out->manifests)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char what[48];
		snprintf(what, sizeof(what), "image index entry %zu", i);
		if (parse_descriptor(json_array_get(ms, i), &out->manifests[i], what, err) < 0) {
			oci_index_release(out);
			return -1;
		}
		out->n++;
	}
	return 0;
}

void oci_index_release(struct oci_index *idx)
{
	free(idx->manifests);
	idx->manifests = NULL;
	idx->n = 0;
}

const struct oci_descriptor *oci_index_select(const struct oci_index *idx, const char *os,
					      const char *arch, const char *variant,
					      struct msb_err *err)
{
	const struct oci_descriptor *arch_only = NULL;
	for (size_t i = 0; i < idx->n; i++) {
		const struct oci_descriptor *d = &idx->manifests[i];
		if (d->attestation)
			continue;
		if (strcmp(d->architecture, arch) != 0)
			continue;
		if (variant && d->variant[0] && strcmp(d->variant, variant) != 0)
			continue;
		if (strcmp(d->os, os) == 0)
			return d;
		/* Upstream falls back to an architecture-only match (an index without os). */
		if (!d->os[0] && !arch_only)
			arch_only = d;
	}
	if (arch_only)
		return arch_only;
	char have[512] = "";
	size_t used = 0;
	for (size_t i = 0; i < idx->n && used < sizeof(have) - 40; i++) {
		const struct oci_descriptor *d = &idx->manifests[i];
		if (d->attestation)
			continue;
		int w = snprintf(have + used, sizeof(have) - used, "%s%s/%s%s%s", used ? ", " : "",
				 d->os[0] ? d->os : "?", d->architecture[0] ? d->architecture : "?",
				 d->variant[0] ? "/" : "", d->variant);
		if (w > 0)
			used += (size_t)w;
		if (used >= sizeof(have))
			used = sizeof(have) - 1;
	}
	msb_err_set(err, MSB_EK_NOT_FOUND, 0,
		    "the image has no %s/%s variant (it has: %s); pick an image built for %s/%s",
		    os, arch, used ? have : "none", os, arch);
	return NULL;
}

void oci_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

size_t oci_strv_len(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* A JSON array of strings (or null/absent -> *out stays NULL). */
static int get_strv(json_t *obj, const char *key, char ***out, struct msb_err *err)
{
	*out = NULL;
	json_t *a = json_object_get(obj, key);
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "image config: %s is not an array", key);
	size_t n = json_array_size(a);
	if (n > 65536)
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "image config: %s is too long", key);
	char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(a, i);
		if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
			oci_strv_free(v);
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "image config: %s[%zu] is not a string", key, i);
		}
		v[i] = strdup(json_string_value(s));
		if (!v[i]) {
			oci_strv_free(v);
			return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		}
	}
	*out = v;
	return 0;
}

static int get_opt_str(json_t *obj, const char *key, char **out, struct msb_err *err)
{
	*out = NULL;
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return msb_err_set(err, MSB_EK_CORRUPT, 0, "image config: %s is not a string", key);
	if (json_string_length(v) == 0)
		return 0;
	*out = strdup(json_string_value(v));
	return *out ? 0 : msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
}

int oci_config_parse(const char *json, size_t len, struct oci_image_config *out,
		     struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_json_ json_t *root = load(json, len, "image config", err);
	if (!root)
		return -1;
	if (get_opt_str(root, "os", &out->os, err) < 0 ||
	    get_opt_str(root, "architecture", &out->architecture, err) < 0)
		goto fail;
	json_t *rootfs = json_object_get(root, "rootfs");
	if (rootfs && json_is_object(rootfs)) {
		json_t *ids = json_object_get(rootfs, "diff_ids");
		if (ids && !json_is_array(ids)) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "image config: diff_ids is not an array");
			goto fail;
		}
		out->n_diff_ids = json_array_size(ids);
	}
	json_t *c = json_object_get(root, "config");
	if (c && !json_is_null(c)) {
		if (!json_is_object(c)) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "image config: config is not an object");
			goto fail;
		}
		if (get_strv(c, "Env", &out->env, err) < 0 ||
		    get_strv(c, "Cmd", &out->cmd, err) < 0 ||
		    get_strv(c, "Entrypoint", &out->entrypoint, err) < 0 ||
		    get_opt_str(c, "WorkingDir", &out->working_dir, err) < 0 ||
		    get_opt_str(c, "User", &out->user, err) < 0)
			goto fail;
		json_t *ports = json_object_get(c, "ExposedPorts");
		if (ports && !json_is_null(ports)) {
			if (!json_is_object(ports) || json_object_size(ports) > 65536) {
				msb_err_set(err, MSB_EK_CORRUPT, 0,
					    "image config: ExposedPorts is not an object");
				goto fail;
			}
			out->exposed_ports = calloc(json_object_size(ports) + 1, sizeof(char *));
			if (!out->exposed_ports) {
				msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
				goto fail;
			}
			size_t i = 0;
			const char *key;
			json_t *val;
			json_object_foreach(ports, key, val)
			{
				out->exposed_ports[i] = strdup(key);
				if (!out->exposed_ports[i++]) {
					msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
					goto fail;
				}
			}
		}
	}
	if (!out->env) {
		out->env = calloc(1, sizeof(char *));
		if (!out->env) {
			msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			goto fail;
		}
	}
	if (!out->exposed_ports) {
		out->exposed_ports = calloc(1, sizeof(char *));
		if (!out->exposed_ports) {
			msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			goto fail;
		}
	}
	return 0;
fail:
	oci_config_release(out);
	return -1;
}

void oci_config_release(struct oci_image_config *c)
{
	oci_strv_free(c->env);
	oci_strv_free(c->cmd);
	oci_strv_free(c->entrypoint);
	oci_strv_free(c->exposed_ports);
	free(c->working_dir);
	free(c->user);
	free(c->os);
	free(c->architecture);
	memset(c, 0, sizeof(*c));
}
