#include "vmm/boot.h"

#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

_Static_assert(sizeof(struct boot_params) == 4096, "zero page is one page");

#define PG_PRESENT 0x1ull
#define PG_RW	   0x2ull
#define PG_PS	   0x80ull

int boot_elf_parse(const void *buf, size_t len, uint64_t file_size, struct boot_elf *out,
		   struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return msb_err_set(err, MSB_EK_USAGE, 0, "not an ELF file: too short");
	memcpy(&eh, buf, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "not an ELF file (a bzImage? pass the ELF vmlinux)");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh.e_machine != EM_X86_64)
		return msb_err_set(err, MSB_EK_USAGE, 0, "not a 64-bit x86 ELF kernel");
	if (eh.e_type != ET_EXEC)
		return msb_err_set(err, MSB_EK_USAGE, 0, "ELF kernel is not an executable");
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "ELF kernel has no usable program headers");
	uint64_t ph_bytes = (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
	if (eh.e_phoff > len || ph_bytes > len - eh.e_phoff)
		return msb_err_set(err, MSB_EK_USAGE, 0, "ELF program headers out of range");

	bool entry_found = false;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, (const uint8_t *)buf + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (out->nsegs == BOOT_MAX_SEGMENTS)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "ELF kernel has too many segments");
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > file_size ||
		    ph.p_filesz > file_size - ph.p_offset)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "ELF segment %u lies outside the file", i);
		if (ph.p_paddr > UINT64_MAX - ph.p_memsz || ph.p_vaddr > UINT64_MAX - ph.p_memsz)
			return msb_err_set(err, MSB_EK_USAGE, 0, "ELF segment %u wraps around", i);
		out->segs[out->nsegs++] = (struct boot_segment){.offset = ph.p_offset,
								.paddr = ph.p_paddr,
								.filesz = ph.p_filesz,
								.memsz = ph.p_memsz};
		if (ph.p_paddr + ph.p_memsz > out->end)
			out->end = ph.p_paddr + ph.p_memsz;
		/* Linux's vmlinux has a physical entry (phys_startup_64); accept a
		 * virtual one too by translating it through its segment. */
		if (!entry_found && eh.e_entry >= ph.p_paddr &&
		    eh.e_entry - ph.p_paddr < ph.p_memsz) {
			out->entry = eh.e_entry;
			entry_found = true;
		} else if (!entry_found && eh.e_entry >= ph.p_vaddr &&
			   eh.e_entry - ph.p_vaddr < ph.p_memsz) {
			out->entry = ph.p_paddr + (eh.e_entry - ph.p_vaddr);
			entry_found = true;
		}
	}
	if (out->nsegs == 0)
		return msb_err_set(err, MSB_EK_USAGE, 0, "ELF kernel has no loadable segment");
	if (!entry_found)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "ELF entry point 0x%llx is in no loadable segment",
				   (unsigned long long)eh.e_entry);
	return 0;
}

static int read_full(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t n = pread(fd, p, chunk, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO; /* the file shrank under us */
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

int boot_load_elf(const struct guest_mem *m, const char *path, struct boot_elf *out,
		  struct msb_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int kind = errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM;
		return msb_err_set(err, kind, errno, "opening kernel %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return msb_err_sys(err, "reading kernel %s", path);
	uint8_t head[4096];
	size_t want = st.st_size < (off_t)sizeof(head) ? (size_t)st.st_size : sizeof(head);
	if (read_full(fd, head, want, 0) < 0)
		return msb_err_sys(err, "reading kernel %s", path);
	if (boot_elf_parse(head, want, (uint64_t)st.st_size, out, err) < 0)
		return msb_err_wrap(err, "kernel %s", path);
	for (unsigned i = 0; i < out->nsegs; i++) {
		const struct boot_segment *s = &out->segs[i];
		uint8_t *dst = gm_ptr(m, s->paddr, s->memsz);
		if (!dst)
			return msb_err_set(
				err, MSB_EK_USAGE, 0,
				"kernel %s: segment at 0x%llx (+%llu bytes) does not fit "
				"in guest RAM; give the VM more memory",
				path, (unsigned long long)s->paddr, (unsigned long long)s->memsz);
		if (read_full(fd, dst, s->filesz, s->offset) < 0)
			return msb_err_sys(err, "reading kernel %s", path);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
	}
	return 0;
}

int boot_load_initrd(const struct guest_mem *m, const char *path, uint64_t kernel_end,
		     uint64_t *gpa, uint64_t *size, struct msb_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int kind = errno == ENOENT ? MSB_EK_NOT_FOUND : MSB_EK_SYSTEM;
		return msb_err_set(err, kind, errno, "opening initrd %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0)
		return msb_err_sys(err, "reading initrd %s", path);
	if (st.st_size == 0)
		return msb_err_set(err, MSB_EK_USAGE, 0, "initrd %s is empty", path);
	uint64_t at = boot_initrd_place(m, (uint64_t)st.st_size, kernel_end, err);
	if (at == 0)
		return -1;
	void *dst = gm_ptr(m, at, (uint64_t)st.st_size);
	if (!dst || read_full(fd, dst, (uint64_t)st.st_size, 0) < 0)
		return msb_err_sys(err, "reading initrd %s", path);
	*gpa = at;
	*size = (uint64_t)st.st_size;
	return 0;
}

int boot_e820_build(const struct guest_mem *m, struct boot_e820 *tab, unsigned max)
{
	if (m->ram_size < BOOT_MIN_RAM || max < 4)
		return -1;
	unsigned n = 0;
	tab[n++] = (struct boot_e820){0, BOOT_EBDA, BOOT_E820_RAM};
	tab[n++] = (struct boot_e820){BOOT_EBDA, BOOT_BASE_END - BOOT_EBDA, BOOT_E820_RESERVED};
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct gm_region *r = &m->regions[i];
		uint64_t start = r->gpa < BOOT_HIGH_MEM ? BOOT_HIGH_MEM : r->gpa;
		if (r->gpa + r->size <= start)
			continue;
		tab[n++] = (struct boot_e820){start, r->gpa + r->size - start, BOOT_E820_RAM};
	}
	return (int)n;
}

uint64_t boot_initrd_place(const struct guest_mem *m, uint64_t size, uint64_t kernel_end,
			   struct msb_err *err)
{
	const struct gm_region *low = &m->regions[0];
	uint64_t top = low->gpa + low->size;
	uint64_t floor = (kernel_end + 4095) & ~4095ull;
	if (floor < BOOT_HIGH_MEM)
		floor = BOOT_HIGH_MEM;
	if (size == 0 || size > top || ((top - size) & ~4095ull) < floor) {
		msb_err_set(
			err, MSB_EK_USAGE, 0,
			"the initrd (%llu bytes) does not fit in guest RAM below %llu MiB above "
			"the kernel; give the VM more memory",
			(unsigned long long)size, (unsigned long long)(top >> 20));
		return 0;
	}
	return (top - size) & ~4095ull;
}

void boot_zero_page_build(void *zp, uint32_t cmdline_len, uint64_t initrd_gpa, uint64_t initrd_size,
			  const struct boot_e820 *e820, unsigned ne820)
{
	struct boot_params bp;
	memset(&bp, 0, sizeof(bp));
	bp.hdr.boot_flag = 0xaa55;
	bp.hdr.header = 0x53726448; /* "HdrS" */
	bp.hdr.version = 0x020f;
	bp.hdr.type_of_loader = 0xff; /* "undefined" loader */
	bp.hdr.loadflags = LOADED_HIGH;
	bp.hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE;
	bp.ext_cmd_line_ptr = 0;
	bp.hdr.cmdline_size = cmdline_len;
	bp.hdr.kernel_alignment = 0x1000000;
	bp.hdr.ramdisk_image = (uint32_t)initrd_gpa;
	bp.ext_ramdisk_image = (uint32_t)(initrd_gpa >> 32);
	bp.hdr.ramdisk_size = (uint32_t)initrd_size;
	bp.ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	if (ne820 > E820_MAX_ENTRIES_ZEROPAGE)
		ne820 = E820_MAX_ENTRIES_ZEROPAGE;
	for (unsigned i = 0; i < ne820; i++) {
		bp.e820_table[i].addr = e820[i].addr;
		bp.e820_table[i].size = e820[i].size;
		bp.e820_table[i].type = e820[i].type;
	}
	bp.e820_entries = (uint8_t)ne820;
	memcpy(zp, &bp, sizeof(bp));
}

int boot_page_tables_write(const struct guest_mem *m)
{
	uint64_t *pml4 = gm_ptr(m, BOOT_PML4, 4096);
	uint64_t *pdpt = gm_ptr(m, BOOT_PDPT, 4096);
	uint64_t *pd = gm_ptr(m, BOOT_PD, 4 * 4096);
	if (!pml4 || !pdpt || !pd)
		return -1;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = BOOT_PDPT | PG_PRESENT | PG_RW;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD + i * 4096) | PG_PRESENT | PG_RW;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | PG_PRESENT | PG_RW | PG_PS;
	return 0;
}

int boot_gdt_write(const struct guest_mem *m)
{
	const uint64_t gdt[4] = {
		0, 0, 0x00af9b000000ffffull, /* 0x10: code, 64-bit, DPL 0, 4 GiB */
		0x00cf93000000ffffull,	     /* 0x18: data, read/write, 4 GiB */
	};
	return gm_write(m, BOOT_GDT, gdt, sizeof(gdt));
}

int boot_cmdline_join(char *out, size_t cap, const char *const *parts, unsigned nparts,
		      struct msb_err *err)
{
	size_t used = 0;
	if (cap == 0)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "no room for a command line");
	out[0] = '\0';
	for (unsigned i = 0; i < nparts; i++) {
		const char *p = parts[i];
		if (!p || !*p)
			continue;
		size_t n = strlen(p);
		size_t need = used + (used ? 1 : 0) + n;
		if (need >= cap || need >= BOOT_CMDLINE_MAX)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "the kernel command line would be longer than %u bytes",
					   BOOT_CMDLINE_MAX - 1);
		if (used)
			out[used++] = ' ';
		memcpy(out + used, p, n);
		used += n;
		out[used] = '\0';
	}
	return 0;
}

int boot_setup_linux(const struct guest_mem *m, const char *cmdline, uint64_t initrd_gpa,
		     uint64_t initrd_size, struct msb_err *err)
{
	size_t len = strlen(cmdline);
	if (len >= BOOT_CMDLINE_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0,
				   "the kernel command line is longer than %u bytes",
				   BOOT_CMDLINE_MAX - 1);
	struct boot_e820 e820[BOOT_E820_MAX];
	int ne = boot_e820_build(m, e820, BOOT_E820_MAX);
	if (ne < 0)
		return msb_err_set(err, MSB_EK_USAGE, 0, "guest RAM must be at least %llu MiB",
				   BOOT_MIN_RAM >> 20);
	if (gm_write(m, BOOT_CMDLINE, cmdline, len + 1) < 0)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "no guest RAM for the command line");
	void *zp = gm_ptr(m, BOOT_ZERO_PAGE, 4096);
	if (!zp)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "no guest RAM for the zero page");
	boot_zero_page_build(zp, (uint32_t)len, initrd_gpa, initrd_size, e820, (unsigned)ne);
	if (boot_page_tables_write(m) < 0 || boot_gdt_write(m) < 0)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "no guest RAM for the page tables");
	return 0;
}
