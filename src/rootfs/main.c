/* msb-rootfs: builds a root filesystem image outside the store, for tests, benchmarks and
 * debugging images.  The product builds images through the store (msb pull, msb image
 * import); this tool calls the same rootfs_build().
 *
 *   msb-rootfs layers OUT LAYER[:MEDIA_TYPE]...   OUT from tar layers, in order
 *   msb-rootfs dir OUT DIR                         OUT from a directory tree
 *   msb-rootfs format                              prints the image format in use
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "rootfs/rootfs.h"

static int usage(void)
{
	fprintf(stderr, "usage: msb-rootfs layers OUT LAYER[:MEDIA_TYPE]...\n"
			"       msb-rootfs dir OUT DIR\n"
			"       msb-rootfs format\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct msb_err err = {0};
	int rc;
	if (argc == 2 && strcmp(argv[1], "format") == 0) {
		printf("%s\n", rootfs_format());
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "dir") == 0) {
		rc = rootfs_build_from_dir(argv[3], argv[2], &err);
	} else if (argc >= 3 && strcmp(argv[1], "layers") == 0) {
		size_t n = (size_t)argc - 3;
		struct rootfs_layer *ls = calloc(n ? n : 1, sizeof(*ls));
		if (!ls)
			return 1;
		for (size_t i = 0; i < n; i++) {
			/* A media type after the last ':' when it looks like one. */
			char *p = argv[3 + i], *colon = strrchr(p, ':');
			ls[i].path = p;
			if (colon && strncmp(colon + 1, "application/", 12) == 0) {
				*colon = '\0';
				ls[i].media_type = colon + 1;
			}
		}
		rc = rootfs_build(ls, n, argv[2], &err);
		free(ls);
	} else {
		return usage();
	}
	if (rc < 0) {
		fprintf(stderr, "msb-rootfs: %s\n", err.msg);
		return msb_err_exit_code(err.kind);
	}
	return 0;
}
