/* The small value syntaxes of a Sandboxfile and of `msb` flags, as upstream
 * parses them: env "K=V", volume "host:guest" | "path", port "host:guest" |
 * "port", path segments, sandbox names, network scopes, image references.
 * Pure functions: they allocate only what they return and never touch files. */
#ifndef MSB_PROJECT_PAIRS_H
#define MSB_PROJECT_PAIRS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

struct msb_env_pair {
	char *name;
	char *value;
};

/* A volume.  host is as written ("./src", "/data"); host_abs is host joined to
 * the project directory when relative (NULL until msb_path_pair_resolve). */
struct msb_path_pair {
	char *host;
	char *guest;
	char *host_abs;
};

struct msb_port_pair {
	uint16_t host;
	uint16_t guest;
};

enum msb_scope { MSB_SCOPE_NONE = 0, MSB_SCOPE_GROUP = 1, MSB_SCOPE_PUBLIC = 2, MSB_SCOPE_ANY = 3 };
#define MSB_SCOPE_DEFAULT MSB_SCOPE_PUBLIC

/* "K=V": split at the first '='; K must be non-empty; V may be empty.  The
 * caller owns out's strings (msb_env_pair_clear).  -1 with a usage error. */
int msb_env_pair_parse(const char *s, struct msb_env_pair *out, struct msb_err *err);
void msb_env_pair_clear(struct msb_env_pair *p);

/* "host:guest" (split at the first ':'; neither side empty) or "path" (the
 * same on both sides).  The guest path must be absolute.  Caller owns out. */
int msb_path_pair_parse(const char *s, struct msb_path_pair *out, struct msb_err *err);
/* Fill host_abs: host unchanged when absolute, else "<project_dir>/<host>"
 * with "./" prefixes dropped. */
int msb_path_pair_resolve(struct msb_path_pair *p, const char *project_dir, struct msb_err *err);
void msb_path_pair_clear(struct msb_path_pair *p);

/* "host:guest" or "port"; each 0..65535 in decimal, as upstream's u16. */
int msb_port_pair_parse(const char *s, struct msb_port_pair *out, struct msb_err *err);
/* One port: s[0, n) in decimal, 0..65535, at most 5 digits; -1 otherwise. */
int msb_port_parse(const char *s, size_t n, uint16_t *out);

/* One path component: non-empty, no '/', not "." or "..". */
bool msb_path_segment_valid(const char *s);

/* 1..63 chars of [A-Za-z0-9_-], the first alphanumeric. */
bool msb_sandbox_name_valid(const char *s);

/* "none" | "group" | "public" | "any"; with ignore_case (the CLI) any case.
 * Returns -1 (no err filled) when unknown. */
int msb_scope_parse(const char *s, bool ignore_case, enum msb_scope *out);
const char *msb_scope_name(enum msb_scope s);

/* An image starting with '.' or '/' is a local root filesystem directory. */
bool msb_image_is_path(const char *image);
/* Is `ref` an OCI reference?  Checked with the image store's parser
 * (oci_ref_parse, Docker's rules), at most 512 characters.  -1 with a usage
 * error that says what is wrong and what to write. */
int msb_image_ref_check(const char *ref, struct msb_err *err);

/* Semantic version MAJOR.MINOR.PATCH[-pre][+build], no leading zeros. */
bool msb_semver_valid(const char *s);

/* True when one absolute guest path equals or lies under the other
 * ("/data" and "/data/x" overlap; "/data" and "/database" do not). */
bool msb_guest_paths_overlap(const char *a, const char *b);

/* "NAME~SCRIPT" -> name and script (NULL when there is no '~').  Caller owns
 * both.  -1 with a usage error when either side is empty. */
int msb_name_script_split(const char *arg, char **name, char **script, struct msb_err *err);

#endif
