/* Direct boot of an x86-64 Linux ELF vmlinux (the 64-bit boot protocol): no
 * firmware, no real-mode setup code.  msb-vmm loads the PT_LOAD segments at
 * their physical addresses, writes the boot structures below into low guest
 * RAM and starts the boot vCPU in long mode at the ELF entry with RSI pointing
 * at the zero page.
 *
 * Low-memory layout (guest physical):
 *   0x00500  GDT: null, null, 0x10 = 64-bit code, 0x18 = data (the selectors
 *            the boot protocol names __BOOT_CS / __BOOT_DS)
 *   0x07000  zero page (struct boot_params)
 *   0x08ff0  initial stack top (the kernel switches to its own at once)
 *   0x09000  PML4, 0x0a000 PDPT, 0x0b000..0x0efff four PDs: the first 4 GiB
 *            identity-mapped with 2 MiB pages
 *   0x20000  kernel command line (NUL-terminated, < BOOT_CMDLINE_MAX)
 *   0x9f000  reserved to 640K: the MP table (mptable.h) at its end, the only
 *            way an ACPI-less kernel learns about the vCPUs and the IOAPIC
 *
 * The builders are pure functions over caller buffers or guest memory, so
 * tests can check them without /dev/kvm.
 */
#ifndef MSB_VMM_BOOT_H
#define MSB_VMM_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/guest_mem.h"

#define BOOT_GDT	   0x500ull
#define BOOT_ZERO_PAGE	   0x7000ull
#define BOOT_STACK_TOP	   0x8ff0ull
#define BOOT_PML4	   0x9000ull
#define BOOT_PDPT	   0xa000ull
#define BOOT_PD		   0xb000ull /* four pages */
#define BOOT_CMDLINE	   0x20000ull
#define BOOT_CMDLINE_MAX   2048u /* the x86 kernel's COMMAND_LINE_SIZE */
#define BOOT_EBDA	   0x9f000ull
#define BOOT_BASE_END	   0xa0000ull  /* 640 KiB */
#define BOOT_HIGH_MEM	   0x100000ull /* 1 MiB: RAM resumes above the BIOS hole */
#define BOOT_MIN_RAM	   (2ull << 20)
#define BOOT_SEL_CODE	   0x10
#define BOOT_SEL_DATA	   0x18
#define BOOT_E820_MAX	   128
#define BOOT_MAX_SEGMENTS  16
#define BOOT_E820_RAM	   1
#define BOOT_E820_RESERVED 2

struct boot_e820 {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

/* The loadable parts of an ELF vmlinux, as parsed by boot_elf_parse(). */
struct boot_segment {
	uint64_t offset; /* in the file */
	uint64_t paddr;	 /* guest physical load address */
	uint64_t filesz; /* bytes copied from the file */
	uint64_t memsz;	 /* bytes occupied (the rest is zeroed) */
};

struct boot_elf {
	uint64_t entry; /* guest physical entry point */
	unsigned nsegs;
	struct boot_segment segs[BOOT_MAX_SEGMENTS];
	uint64_t end; /* highest paddr + memsz of any segment */
};

/* Parse an ELF64 x86-64 executable from `buf`, the first `len` bytes of a file
 * of `file_size` bytes (the program headers must lie inside `buf`).  Checks
 * every segment against the file size and for overflow; a virtual entry point
 * is turned into a physical one through the segment that holds it.  Pure:
 * fuzzable, touches nothing but `out`. */
int boot_elf_parse(const void *buf, size_t len, uint64_t file_size, struct boot_elf *out,
		   struct msb_err *err);

/* Read the ELF kernel at `path` into guest memory at its physical addresses.
 * Every segment must fit in guest RAM. */
int boot_load_elf(const struct guest_mem *m, const char *path, struct boot_elf *out,
		  struct msb_err *err);

/* Read the initrd at `path` into guest RAM where boot_initrd_place() puts it
 * (above `kernel_end`); its address and size are returned in *gpa / *size. */
int boot_load_initrd(const struct guest_mem *m, const char *path, uint64_t kernel_end,
		     uint64_t *gpa, uint64_t *size, struct msb_err *err);

/* Fill `tab` (room for `max` entries) with the e820 map of `m`: RAM below the
 * EBDA, the EBDA reserved (it holds the MP table), RAM from 1 MiB to the MMIO
 * gap, RAM above 4 GiB.  Returns the number of entries, or -1 when RAM is
 * below BOOT_MIN_RAM or `max` is too small. */
int boot_e820_build(const struct guest_mem *m, struct boot_e820 *tab, unsigned max);

/* Where an initrd of `size` bytes goes: page-aligned at the top of RAM below
 * the MMIO gap, above `kernel_end`.  0 and `err` filled when it does not fit. */
uint64_t boot_initrd_place(const struct guest_mem *m, uint64_t size, uint64_t kernel_end,
			   struct msb_err *err);

/* Fill the 4096-byte zero page `zp` (struct boot_params layout): boot-protocol
 * header magic, loader type, command line pointer and size, initrd, e820. */
void boot_zero_page_build(void *zp, uint32_t cmdline_len, uint64_t initrd_gpa, uint64_t initrd_size,
			  const struct boot_e820 *e820, unsigned ne820);

/* Write the identity-mapping page tables (first 4 GiB, 2 MiB pages) and the
 * boot GDT into guest memory.  -1 when RAM is too small to hold them. */
int boot_page_tables_write(const struct guest_mem *m);
int boot_gdt_write(const struct guest_mem *m);

/* Join the pieces of a kernel command line with single spaces, skipping NULL
 * and empty ones, into `out` (caller-owned, `cap` bytes).  -1 with a usage
 * error when the result would not fit in `cap` or in BOOT_CMDLINE_MAX. */
int boot_cmdline_join(char *out, size_t cap, const char *const *parts, unsigned nparts,
		      struct msb_err *err);

/* Everything for a Linux boot: command line, zero page (with the initrd
 * already in guest memory at initrd_gpa, or 0), page tables, GDT. */
int boot_setup_linux(const struct guest_mem *m, const char *cmdline, uint64_t initrd_gpa,
		     uint64_t initrd_size, struct msb_err *err);

#endif
