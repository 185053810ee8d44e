/* Format-preserving edits of a Sandboxfile.  libyaml keeps no comments, so the
 * edits work on the text: the parser's marks say where the `sandboxes:`
 * mapping and each entry begin and end, and only those bytes change.  Every
 * comment, blank line and the order of the rest of the file stay as they were
 * (tests/unit/test_project_edit.c checks it byte for byte). */
#ifndef MSB_PROJECT_EDIT_H
#define MSB_PROJECT_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "project/sandboxfile.h"

/* What `msb add` writes for each new sandbox.  Strings are borrowed.  Fields
 * that are NULL / 0 / empty are left out, except shell (MSB_DEFAULT_SHELL
 * when NULL, as upstream writes). */
struct msb_sandbox_spec {
	const char *image;
	uint32_t memory_mib;
	uint8_t cpus;
	const char *shell;
	const char *const *volumes;
	size_t nvolumes;
	const char *const *ports;
	size_t nports;
	const char *const *envs;
	size_t nenvs;
	const char *const *depends_on;
	size_t ndepends_on;
	const char *workdir;
	const struct msb_kv *scripts;
	size_t nscripts;
	const struct msb_kv *imports;
	size_t nimports;
	const struct msb_kv *exports;
	size_t nexports;
	const char *scope; /* "none" | "group" | "public" | "any", or NULL */
	const char *const *command;
	size_t ncommand;
	bool no_default_shell; /* write no shell when shell is NULL (exact server configs) */
};

/* Check every value of a spec the way the loader will (image reference, pairs,
 * scope, workdir, script names); messages name the flag (--port, -v, ...). */
int msb_sandbox_spec_check(const struct msb_sandbox_spec *spec, struct msb_err *err);

/* Text in, text out.  `fname` names the file in messages.  On success *out is
 * a caller-owned NUL-terminated buffer of *outlen bytes.  The input must be a
 * YAML document whose top level is a block mapping (or empty).
 *   add:    names must be new (MSB_EK_EXISTS otherwise); appended after the
 *           last entry of `sandboxes:`, which is created when missing.
 *   remove: names must exist (MSB_EK_NOT_FOUND otherwise). */
int msb_sandboxfile_text_add(const char *text, size_t len, const char *fname,
			     const char *const *names, size_t nnames,
			     const struct msb_sandbox_spec *spec, char **out, size_t *outlen,
			     struct msb_err *err);
/* Replace the entry `name` in place (same position, new settings; comments
 * inside the old entry go with it) or add it when there is none: upstream's
 * sandbox.start "config replaces the entry" semantics. */
int msb_sandboxfile_text_set(const char *text, size_t len, const char *fname, const char *name,
			     const struct msb_sandbox_spec *spec, char **out, size_t *outlen,
			     struct msb_err *err);
int msb_sandboxfile_text_remove(const char *text, size_t len, const char *fname,
				const char *const *names, size_t nnames, char **out, size_t *outlen,
				struct msb_err *err);

/* The whole operation on a file: read it, check it loads, edit, re-parse the
 * result and check that exactly the intended sandboxes were added (with the
 * requested values) or removed, then write it to a temporary file beside it and
 * rename it over, keeping its mode.  On any failure the file is unchanged. */
int msb_sandboxfile_add(const char *path, const char *const *names, size_t nnames,
			const struct msb_sandbox_spec *spec, struct msb_err *err);
int msb_sandboxfile_remove(const char *path, const char *const *names, size_t nnames,
			   struct msb_err *err);
/* Replace-or-add one sandbox in the file, verified and atomic like add. */
int msb_sandboxfile_set(const char *path, const char *name, const struct msb_sandbox_spec *spec,
			struct msb_err *err);

/* Write `len` bytes to path via a temporary file in the same directory, fsync
 * and rename; the mode is `mode` (or the existing file's mode when it exists). */
int msb_write_file_atomic(const char *path, const char *data, size_t len, unsigned mode,
			  struct msb_err *err);

#endif
