/* Guest physical memory, and the one bounds-checked way to touch it.
 *
 * Every guest-controlled address or length (descriptor addresses, ring
 * addresses, buffer lengths, boot structures the guest may later rewrite)
 * goes through gm_ptr()/gm_read()/gm_write().  They refuse any range that is
 * not entirely inside one RAM region, with overflow-safe arithmetic, so a
 * hostile guest value can never make us touch host memory outside guest RAM.
 *
 * Layout on x86_64: RAM from GPA 0 up to the 32-bit MMIO gap (GM_MMIO_GAP_START,
 * where virtio-mmio devices and the IOAPIC/LAPIC live), and the rest of RAM
 * from 4 GiB up.  The struct owns nothing; gm_map()/gm_unmap() manage the
 * anonymous (or file-backed) host mapping behind it.
 */
#ifndef MSB_VMM_GUEST_MEM_H
#define MSB_VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define GM_MAX_REGIONS	  2
#define GM_MMIO_GAP_START 0xc0000000ull	 /* 3 GiB */
#define GM_HIGH_RAM_START 0x100000000ull /* 4 GiB */

struct gm_region {
	uint64_t gpa;  /* guest physical start */
	uint64_t size; /* bytes */
	uint8_t *host; /* host virtual address of gpa */
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	unsigned nregions;
	uint8_t *base;	   /* the whole host mapping (regions are slices of it) */
	size_t map_size;   /* its length */
	uint64_t ram_size; /* total guest RAM in bytes */
};

/* Map `ram_size` bytes of guest RAM (anonymous, private, MAP_NORESERVE) and lay
 * out the regions.  ram_size must be a non-zero multiple of 4096. */
int gm_map(struct guest_mem *m, uint64_t ram_size, struct msb_err *err);

/* Map the first `ram_size` bytes of the open file `fd` as guest RAM, private
 * (copy-on-write: guest writes never reach the file, and processes mapping
 * the same file share its clean pages).  A snapshot's memory file. */
int gm_map_file(struct guest_mem *m, int fd, uint64_t ram_size, struct msb_err *err);

/* Describe existing host memory as guest RAM starting at GPA 0 (one region);
 * for unit tests and fuzzers that bring their own buffer.  Nothing is owned. */
void gm_init_flat(struct guest_mem *m, void *host, uint64_t size);

void gm_unmap(struct guest_mem *m);

/* Host pointer for [gpa, gpa + len), or NULL when any byte of that range is
 * outside guest RAM or the range crosses a region boundary.  len 0 is
 * valid iff gpa lies within (or at the end of) a region.  The pointer stays
 * valid until gm_unmap(); the guest may change the bytes under it at any time,
 * so read each guest value once into a local before checking it. */
void *gm_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy out of / into guest RAM; 0 on success, -1 (no bytes copied) when the
 * range is not valid as for gm_ptr(). */
int gm_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);
int gm_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);

/* True when [gpa, gpa + len) is valid as for gm_ptr(). */
bool gm_valid(const struct guest_mem *m, uint64_t gpa, uint64_t len);

#endif
