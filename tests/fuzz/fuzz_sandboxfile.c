/* The Sandboxfile parser and the format-preserving editor on arbitrary bytes.
 * Invariants: parsing and editing never crash or leak; when a file loads,
 * `add` succeeds and its result reads back with the new sandbox (what
 * msb_sandboxfile_add checks before writing), `remove` of it gives the
 * original bytes back (when the file had sandboxes and a final newline). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "project/edit.h"
#include "project/sandboxfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msb_err err;
	struct msb_sandboxfile *sf = NULL;
	const char *text = (const char *)data;
	if (msb_sandboxfile_parse(text, size, "F", "/p", &sf, &err) < 0)
		return 0;
	/* Only a non-empty sandboxes: mapping comes back byte for byte: an
	 * empty one (or none) gets a `sandboxes:` key written by add, and a
	 * file without a final line break gets one. */
	bool identity = sf->nsandboxes > 0 && size > 0 && data[size - 1] == '\n';
	/* set on an existing entry: never crashes; when the result loads, the
	 * sandbox keeps its place among the others. */
	if (sf->nsandboxes > 0) {
		const struct msb_sandbox_spec one = {.image = "busybox", .cpus = 3};
		char *set = NULL;
		size_t slen;
		if (msb_sandboxfile_text_set(text, size, "F", sf->sandboxes[0].name, &one, &set,
					     &slen, &err) == 0) {
			struct msb_sandboxfile *s2 = NULL;
			if (msb_sandboxfile_parse(set, slen, "F", "/p", &s2, &err) == 0) {
				if (s2->nsandboxes == sf->nsandboxes &&
				    strcmp(s2->sandboxes[0].name, sf->sandboxes[0].name) == 0 &&
				    s2->sandboxes[0].cpus != 3)
					abort();
				msb_sandboxfile_free(s2);
			}
			free(set);
		}
	}
	msb_sandboxfile_free(sf);
	const char *names[] = {"fz0"};
	const char *ports[] = {"8080:80"};
	const struct msb_kv scripts[] = {{"start", "echo 'a: b' # c\nexit 0\n"}};
	struct msb_sandbox_spec spec = {.image = "python",
					.memory_mib = 256,
					.ports = ports,
					.nports = 1,
					.scripts = scripts,
					.nscripts = 1};
	char *added = NULL, *back = NULL;
	size_t alen, blen;
	if (msb_sandboxfile_text_add(text, size, "F", names, 1, &spec, &added, &alen, &err) < 0)
		return 0;
	struct msb_sandboxfile *after = NULL;
	if (msb_sandboxfile_parse(added, alen, "F", "/p", &after, &err) == 0) {
		/* An edit that does not read back is refused by msb_sandboxfile_add
		 * (it re-parses before writing); one that does must undo exactly. */
		const struct msb_sandbox *sb = msb_sandboxfile_find(after, "fz0");
		bool verified = sb && strcmp(sb->image, "python") == 0 && sb->memory_mib == 256 &&
				after->nsandboxes >= 1;
		msb_sandboxfile_free(after);
		if (verified) {
			if (msb_sandboxfile_text_remove(added, alen, "F", names, 1, &back, &blen,
							&err) < 0)
				abort();
			if (identity && (blen != size || memcmp(back, data, size) != 0))
				abort();
		}
	}
	free(added);
	free(back);
	return 0;
}
