#include "server/params.h"

#include <stdlib.h>
#include <string.h>

#define BAD(err, ...) msb_err_set((err), MSB_EK_USAGE, 0, "Invalid params: " __VA_ARGS__)

int p_object(json_t *params, bool null_ok, struct msb_err *err)
{
	if (json_is_object(params) || (null_ok && (!params || json_is_null(params))))
		return 0;
	return BAD(err, "params must be an object");
}

int p_string(json_t *o, const char *key, bool required, const char **out, struct msb_err *err)
{
	json_t *v = json_object_get(o, key);
	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return BAD(err, "missing field `%s`", key);
		return 0;
	}
	if (!json_is_string(v))
		return BAD(err, "`%s` must be a string", key);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return BAD(err, "`%s` contains a NUL character", key);
	*out = json_string_value(v);
	return 0;
}

int p_sandbox(json_t *o, const char *key, bool required, const char **out, struct msb_err *err)
{
	if (p_string(o, key, required, out, err) < 0)
		return -1;
	if (*out && !sb_name_valid(*out))
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "Invalid sandbox name '%.80s': use 1-63 letters, digits, '_' "
				   "or '-', starting with a letter or digit",
				   *out);
	return 0;
}

int p_path(json_t *o, const char *key, const char **out, struct msb_err *err)
{
	if (p_string(o, key, true, out, err) < 0)
		return -1;
	if ((*out)[0] != '/')
		return BAD(err, "`%s` must be an absolute path", key);
	if (strlen(*out) > 4095)
		return BAD(err, "`%s` is longer than 4095 bytes", key);
	return 0;
}

int p_strv(json_t *o, const char *key, struct sb_strv *out, struct msb_err *err)
{
	json_t *v = json_object_get(o, key);
	out->v = NULL;
	out->n = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v))
		return BAD(err, "`%s` must be an array of strings", key);
	size_t n = json_array_size(v);
	const char **a = calloc(n + 1, sizeof(*a));
	if (!a)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(v, i);
		if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e)) {
			free(a);
			return BAD(err, "`%s` must be an array of strings", key);
		}
		a[i] = json_string_value(e);
	}
	out->v = a;
	out->n = n;
	return 0;
}

int p_uint(json_t *o, const char *key, uint64_t max, bool *has, uint64_t *out, struct msb_err *err)
{
	json_t *v = json_object_get(o, key);
	*has = false;
	if (!v || json_is_null(v))
		return 0;
	/* An integral real (upstream's Python SDK sends "cpus": 1.0) counts. */
	double d = json_is_real(v) ? json_real_value(v) : -1;
	if (json_is_real(v) && d >= 0 && d <= (double)max && d == (double)(uint64_t)d) {
		*has = true;
		*out = (uint64_t)d;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return BAD(err, "`%s` must be an integer from 0 to %llu", key,
			   (unsigned long long)max);
	*has = true;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int p_seconds(json_t *o, const char *key, double max, double *out, struct msb_err *err)
{
	json_t *v = json_object_get(o, key);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > max)
		return BAD(err, "`%s` must be a number of seconds from 0 to %.0f", key, max);
	*out = json_number_value(v);
	return 0;
}

int p_bool(json_t *o, const char *key, bool *out, struct msb_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return BAD(err, "`%s` must be true or false", key);
	*out = json_is_true(v);
	return 0;
}
