/* Typed access to JSON-RPC params.  Every failure is a usage error whose
 * message starts "Invalid params: " and names the field.  Strings returned
 * are borrowed from the JSON. */
#ifndef MSB_SERVER_PARAMS_H
#define MSB_SERVER_PARAMS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "server/backend.h"

/* params must be an object; null counts as {} only when null_ok. */
int p_object(json_t *params, bool null_ok, struct msb_err *err);
/* A string without NUL bytes; absent/null -> *out = NULL unless required. */
int p_string(json_t *o, const char *key, bool required, const char **out, struct msb_err *err);
/* A sandbox name satisfying sb_name_valid(). */
int p_sandbox(json_t *o, const char *key, bool required, const char **out, struct msb_err *err);
/* An absolute path without NUL bytes. */
int p_path(json_t *o, const char *key, const char **out, struct msb_err *err);
/* An array of strings; out->v is malloc'd (free it), its strings borrowed. */
int p_strv(json_t *o, const char *key, struct sb_strv *out, struct msb_err *err);
/* An integer in [0, max]. */
int p_uint(json_t *o, const char *key, uint64_t max, bool *has, uint64_t *out, struct msb_err *err);
/* A number in [0, max] (seconds). */
int p_seconds(json_t *o, const char *key, double max, double *out, struct msb_err *err);
int p_bool(json_t *o, const char *key, bool *out, struct msb_err *err);

#endif
