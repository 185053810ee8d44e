/* SETUP's WARM (docs/agent-protocol.md): read programs and what they load into
 * the guest's page cache, once, before a warm snapshot is taken, so that every
 * sandbox restored from it starts them without reading (and, on PVM, without
 * emulating the kernel work of reading) the image.
 *
 * Only files are read: nothing of the image runs.  What is read comes from the
 * image (untrusted): regular files only (a FIFO or device at a program's path
 * is skipped), bounded in count and size; the ELF parser is pure, unit tested
 * and fuzzed (fuzz_init_elf). */
#ifndef MSB_INIT_WARM_H
#define MSB_INIT_WARM_H

#include <stddef.h>
#include <stdint.h>

#define WARM_NEEDED_MAX 32
#define WARM_NAME_MAX	256

/* What a dynamic ELF file asks the loader for. */
struct warm_elf {
	char interp[WARM_NAME_MAX]; /* PT_INTERP (absolute), or "" */
	char needed[WARM_NEEDED_MAX][WARM_NAME_MAX];
	unsigned nneeded; /* DT_NEEDED names (no '/', or absolute) in order */
};

/* Parse an ELF64 little-endian file's program headers and dynamic section
 * (pure).  0: *out filled (empty for a static or non-dynamic file); -1: not
 * such an ELF file, or malformed.  Names that do not fit, contain bytes
 * below 0x21 or are relative paths with '/' are left out. */
int warm_elf_parse(const uint8_t *buf, size_t len, struct warm_elf *out);

/* The first "DIR/name" of path (':'-separated, absolute DIRs only; NULL or ""
 * gives the default) that is a regular file with an execute bit; an absolute
 * name as it is.  0 with out filled, -1 when none. */
int warm_lookup(const char *name, const char *path, char *out, size_t out_len);

struct warm_stats {
	unsigned files;
	uint64_t bytes;
};
/* Read each program (looked up in path), its interpreter and its libraries
 * (transitively), each file once.  Never fails: what cannot be read is skipped. */
void warm_programs(const char (*names)[256], unsigned n, const char *path, struct warm_stats *st);

#endif
