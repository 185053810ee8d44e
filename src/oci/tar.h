/* A small tar reader for image archives (OCI archives, docker-archive): extracts the
 * regular files and directories of an uncompressed tar (ustar, GNU long names, pax path
 * records) under a directory.  Symlinks, hard links and devices are skipped: archive
 * formats need none.  Entry names are hostile: absolute names, `..` components and
 * names through a skipped link are refused. */
#ifndef MSB_OCI_TAR_H
#define MSB_OCI_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Check and normalise an entry name (strip "./" and duplicate '/'); -1 when it is absolute,
 * empty, has a ".." component or is longer than `cap`-1.  Pure; fuzzable. */
int oci_tar_clean_name(const char *name, size_t len, char *out, size_t cap);

/* Extract `tar_path` under the existing directory `dest`, at most `max_bytes` of file
 * data in total (a tar bomb is refused with MSB_EK_CORRUPT). */
int oci_tar_extract(const char *tar_path, const char *dest, uint64_t max_bytes,
		    struct msb_err *err);

#endif
