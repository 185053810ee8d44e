/* The boot-structure builders of msb-vmm as pure functions: e820, zero page,
 * command line, page tables, GDT, ELF parsing, initrd placement, MP table,
 * CPUID policy.  No /dev/kvm needed. */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <unistd.h>

#include "tests/unit/test.h"
#include "vmm/boot.h"
#include "vmm/cpu.h"
#include "vmm/mptable.h"

static uint8_t ram[2 << 20];

/* A guest_mem with regions but no host memory: enough for layout code. */
static void fake_mem(struct guest_mem *m, uint64_t ram_size)
{
	memset(m, 0, sizeof(*m));
	m->ram_size = ram_size;
	uint64_t low = ram_size < GM_MMIO_GAP_START ? ram_size : GM_MMIO_GAP_START;
	m->regions[m->nregions++] = (struct gm_region){0, low, NULL};
	if (ram_size > low)
		m->regions[m->nregions++] =
			(struct gm_region){GM_HIGH_RAM_START, ram_size - low, NULL};
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

TEST(e820_small_vm)
{
	struct guest_mem m;
	struct boot_e820 tab[BOOT_E820_MAX];
	fake_mem(&m, 256ull << 20);
	int n = boot_e820_build(&m, tab, BOOT_E820_MAX);
	CHECK_INT(n, ==, 3);
	CHECK(tab[0].addr == 0 && tab[0].size == BOOT_EBDA && tab[0].type == BOOT_E820_RAM);
	CHECK(tab[1].addr == BOOT_EBDA && tab[1].addr + tab[1].size == 0xa0000);
	CHECK_INT(tab[1].type, ==, BOOT_E820_RESERVED);
	CHECK(tab[2].addr == BOOT_HIGH_MEM && tab[2].addr + tab[2].size == (256ull << 20));
}

TEST(e820_splits_around_the_mmio_gap)
{
	struct guest_mem m;
	struct boot_e820 tab[BOOT_E820_MAX];
	fake_mem(&m, 5ull << 30);
	int n = boot_e820_build(&m, tab, BOOT_E820_MAX);
	CHECK_INT(n, ==, 4);
	CHECK(tab[2].addr + tab[2].size == GM_MMIO_GAP_START);
	CHECK(tab[3].addr == GM_HIGH_RAM_START && tab[3].size == (2ull << 30));
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		if (tab[i].type == BOOT_E820_RAM)
			total += tab[i].size;
	/* All RAM but the EBDA and the legacy hole below 1 MiB is declared. */
	CHECK(total == (5ull << 30) - (BOOT_HIGH_MEM - BOOT_EBDA));
}

TEST(e820_refuses_tiny_ram_and_small_tables)
{
	struct guest_mem m;
	struct boot_e820 tab[4];
	fake_mem(&m, 1ull << 20);
	CHECK_INT(boot_e820_build(&m, tab, 4), ==, -1);
	fake_mem(&m, 64ull << 20);
	CHECK_INT(boot_e820_build(&m, tab, 3), ==, -1);
}

TEST(zero_page_fields_at_their_protocol_offsets)
{
	uint8_t zp[4096];
	memset(zp, 0x5a, sizeof(zp));
	struct boot_e820 e[2] = {{0, 0x9fc00, 1}, {0x100000, 0x1000000, 1}};
	boot_zero_page_build(zp, 42, 0x123456000ull, 0x1000, e, 2);
	/* Offsets from the Linux x86 boot protocol (Documentation/x86/boot.rst). */
	CHECK_INT(zp[0x1fe] | zp[0x1ff] << 8, ==, 0xaa55);
	CHECK(memcmp(zp + 0x202, "HdrS", 4) == 0);
	CHECK_INT(zp[0x210], ==, 0xff);		       /* type_of_loader */
	CHECK_INT(rd32(zp + 0x228), ==, BOOT_CMDLINE); /* cmd_line_ptr */
	CHECK_INT(rd32(zp + 0x238), ==, 42);	       /* cmdline_size */
	CHECK_INT(rd32(zp + 0x218), ==, 0x23456000);   /* ramdisk_image */
	CHECK_INT(rd32(zp + 0xc0), ==, 0x1);	       /* ext_ramdisk_image */
	CHECK_INT(rd32(zp + 0x21c), ==, 0x1000);       /* ramdisk_size */
	CHECK_INT(zp[0x1e8], ==, 2);		       /* e820_entries */
	CHECK(rd64(zp + 0x2d0 + 20) == 0x100000);      /* e820_table[1].addr */
	CHECK(rd64(zp + 0x2d0 + 28) == 0x1000000);
	CHECK_INT(rd32(zp + 0x2d0 + 36), ==, 1);
	CHECK_INT(zp[0x100], ==, 0); /* everything else cleared */
}

TEST(cmdline_join_and_limits)
{
	char out[BOOT_CMDLINE_MAX];
	struct msb_err err = {0};
	const char *parts[] = {"console=hvc0", NULL, "", "virtio_mmio.device=4K@0xd0000000:5",
			       "quiet"};
	CHECK_INT(boot_cmdline_join(out, sizeof(out), parts, 5, &err), ==, 0);
	CHECK_STR(out, "console=hvc0 virtio_mmio.device=4K@0xd0000000:5 quiet");
	static char big[BOOT_CMDLINE_MAX];
	memset(big, 'a', sizeof(big) - 1);
	const char *two[] = {"x", big};
	CHECK_INT(boot_cmdline_join(out, sizeof(out), two, 2, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	char small[8];
	const char *p3[] = {"abc", "defg"};
	CHECK_INT(boot_cmdline_join(small, sizeof(small), p3, 2, &err), ==, -1);
}

TEST(page_tables_identity_map_4_gib)
{
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	CHECK_INT(boot_page_tables_write(&m), ==, 0);
	uint64_t gpa;
	const uint64_t probes[] = {0, 0x1000000, 0x1234567, 0xd0000008, 0xfee00000, 0xffffffff};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		CHECK_INT(cpu_translate(&m, 1, BOOT_PML4, probes[i], &gpa), ==, 0);
		CHECK(gpa == probes[i]);
	}
	CHECK_INT(cpu_translate(&m, 1, BOOT_PML4, 0x100000000ull, &gpa), ==, -1);
	CHECK_INT(cpu_translate(&m, 1, BOOT_PML4, 0xffffffff81000000ull, &gpa), ==, -1);
	uint64_t pml4e = rd64(ram + BOOT_PML4);
	CHECK((pml4e & ~0xfffull) == BOOT_PDPT && (pml4e & 3) == 3);
	struct guest_mem tiny;
	gm_init_flat(&tiny, ram, 0x8000);
	CHECK_INT(boot_page_tables_write(&tiny), ==, -1);
}

TEST(gdt_has_the_boot_selectors)
{
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	CHECK_INT(boot_gdt_write(&m), ==, 0);
	uint64_t code = rd64(ram + BOOT_GDT + BOOT_SEL_CODE);
	uint64_t data = rd64(ram + BOOT_GDT + BOOT_SEL_DATA);
	CHECK(code & (1ull << 47)); /* present */
	CHECK(code & (1ull << 53)); /* L: 64-bit */
	CHECK(code & (1ull << 43)); /* executable */
	CHECK(data & (1ull << 47));
	CHECK(!(data & (1ull << 43)));
	CHECK(rd64(ram + BOOT_GDT) == 0);
}

/* A minimal ELF64 x86-64 executable: header, `n` program headers, payload. */
static size_t make_elf(uint8_t *buf, uint64_t entry, const Elf64_Phdr *ph, unsigned n)
{
	Elf64_Ehdr eh;
	memset(&eh, 0, sizeof(eh));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = entry;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = (uint16_t)n;
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), ph, n * sizeof(*ph));
	return sizeof(eh) + n * sizeof(*ph);
}

TEST(elf_parse_finds_segments_and_entry)
{
	uint8_t buf[4096];
	Elf64_Phdr ph[3] = {
		{.p_type = PT_LOAD,
		 .p_offset = 0x200,
		 .p_vaddr = 0xffffffff81000000ull,
		 .p_paddr = 0x1000000,
		 .p_filesz = 0x100,
		 .p_memsz = 0x300},
		{.p_type = PT_NOTE, .p_offset = 0x300, .p_filesz = 0x10, .p_memsz = 0x10},
		{.p_type = PT_LOAD,
		 .p_offset = 0x300,
		 .p_vaddr = 0xffffffff82000000ull,
		 .p_paddr = 0x2000000,
		 .p_filesz = 0x80,
		 .p_memsz = 0x1000},
	};
	size_t len = make_elf(buf, 0x1000010, ph, 3);
	struct boot_elf e;
	struct msb_err err = {0};
	CHECK_INT(boot_elf_parse(buf, len, 0x400, &e, &err), ==, 0);
	CHECK_INT(e.nsegs, ==, 2);
	CHECK(e.entry == 0x1000010);
	CHECK(e.end == 0x2001000);
	CHECK(e.segs[1].paddr == 0x2000000 && e.segs[1].filesz == 0x80);
	/* A virtual entry point is translated through its segment. */
	make_elf(buf, 0xffffffff81000020ull, ph, 3);
	CHECK_INT(boot_elf_parse(buf, len, 0x400, &e, &err), ==, 0);
	CHECK(e.entry == 0x1000020);
}

TEST(elf_parse_refuses_bad_files)
{
	uint8_t buf[4096];
	struct boot_elf e;
	struct msb_err err = {0};
	Elf64_Phdr ph = {.p_type = PT_LOAD,
			 .p_offset = 0x200,
			 .p_paddr = 0x1000000,
			 .p_filesz = 0x100,
			 .p_memsz = 0x100};
	size_t len = make_elf(buf, 0x1000000, &ph, 1);
	/* segment past the end of the file */
	CHECK_INT(boot_elf_parse(buf, len, 0x2ff, &e, &err), ==, -1);
	/* entry outside every segment */
	make_elf(buf, 0x5000000, &ph, 1);
	CHECK_INT(boot_elf_parse(buf, len, 0x400, &e, &err), ==, -1);
	/* program headers beyond what was read */
	make_elf(buf, 0x1000000, &ph, 1);
	CHECK_INT(boot_elf_parse(buf, len - 1, 0x400, &e, &err), ==, -1);
	/* filesz > memsz; a wrapping paddr */
	Elf64_Phdr bad = ph;
	bad.p_filesz = 0x200;
	make_elf(buf, 0x1000000, &bad, 1);
	CHECK_INT(boot_elf_parse(buf, len, 0x1000, &e, &err), ==, -1);
	bad = ph;
	bad.p_paddr = UINT64_MAX - 0x10;
	make_elf(buf, UINT64_MAX - 0x8, &bad, 1);
	CHECK_INT(boot_elf_parse(buf, len, 0x1000, &e, &err), ==, -1);
	/* a bzImage or anything else */
	memcpy(buf, "MZ\0\0", 4);
	CHECK_INT(boot_elf_parse(buf, len, 0x1000, &e, &err), ==, -1);
	CHECK(strstr(err.msg, "vmlinux") != NULL);
	CHECK_INT(boot_elf_parse(buf, 10, 10, &e, &err), ==, -1);
}

TEST(elf_load_copies_and_zeroes)
{
	uint8_t file[0x400];
	memset(file, 0, sizeof(file));
	Elf64_Phdr ph = {.p_type = PT_LOAD,
			 .p_offset = 0x200,
			 .p_paddr = 0x100000,
			 .p_filesz = 0x100,
			 .p_memsz = 0x2000};
	make_elf(file, 0x100000, &ph, 1);
	memset(file + 0x200, 0xab, 0x100);
	char path[] = "/tmp/test_vmm_elf_XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, file, sizeof(file)) == (ssize_t)sizeof(file));
	close(fd);
	struct guest_mem m;
	gm_init_flat(&m, ram, sizeof(ram));
	memset(ram + 0x100000, 0xee, 0x3000);
	struct boot_elf e;
	struct msb_err err = {0};
	int rc = boot_load_elf(&m, path, &e, &err);
	/* Too little RAM for a segment at 0x1f0000 + 0x20000. */
	Elf64_Phdr big = ph;
	big.p_paddr = sizeof(ram) - 0x1000;
	make_elf(file, big.p_paddr, &big, 1);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK(write(fd, file, sizeof(file)) == (ssize_t)sizeof(file));
	close(fd);
	struct boot_elf e2;
	int rc2 = boot_load_elf(&m, path, &e2, &err);
	unlink(path);
	CHECK_INT(rc, ==, 0);
	CHECK_INT(ram[0x100000], ==, 0xab);
	CHECK_INT(ram[0x1000ff], ==, 0xab);
	CHECK_INT(ram[0x100100], ==, 0);
	CHECK_INT(ram[0x101fff], ==, 0);
	CHECK_INT(ram[0x102000], ==, 0xee);
	CHECK_INT(rc2, ==, -1);
	CHECK(strstr(err.msg, "more memory") != NULL);
	CHECK_INT(boot_load_elf(&m, "/nonexistent/vmlinux", &e2, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
}

TEST(initrd_goes_high_and_above_the_kernel)
{
	struct guest_mem m;
	struct msb_err err = {0};
	fake_mem(&m, 256ull << 20);
	uint64_t at = boot_initrd_place(&m, 1000001, 0x2000000, &err);
	CHECK(at != 0);
	CHECK((at & 4095) == 0);
	CHECK(at + 1000001 <= (256ull << 20));
	CHECK(at + 1000001 + 4096 > (256ull << 20));
	/* Large VMs: below the MMIO gap. */
	fake_mem(&m, 8ull << 30);
	at = boot_initrd_place(&m, 1 << 20, 0x2000000, &err);
	CHECK(at + (1 << 20) <= GM_MMIO_GAP_START && at > GM_MMIO_GAP_START - (2 << 20));
	/* No room above the kernel. */
	fake_mem(&m, 64ull << 20);
	CHECK(boot_initrd_place(&m, 32ull << 20, 40ull << 20, &err) == 0);
	CHECK(strstr(err.msg, "more memory") != NULL);
	CHECK(boot_initrd_place(&m, 0, 0, &err) == 0);
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

TEST(mptable_is_well_formed)
{
	uint8_t buf[4096];
	size_t n = mptable_build(buf, sizeof(buf), 0x9fe00, 2);
	CHECK_INT(n, ==, mptable_size(2));
	CHECK_INT(n % 16, ==, 0);
	/* The floating pointer comes last and points at the table's start. */
	const uint8_t *fp = buf + n - 16;
	CHECK(memcmp(fp, "_MP_", 4) == 0);
	CHECK_INT(sum8(fp, 16), ==, 0);
	CHECK_INT(rd32(fp + 4), ==, 0x9fe00);
	const uint8_t *mpc = buf;
	CHECK(memcmp(mpc, "PCMP", 4) == 0);
	unsigned len = mpc[4] | mpc[5] << 8;
	CHECK(len + 16 <= n && len + 32 > n);
	CHECK_INT(sum8(mpc, len), ==, 0);
	CHECK_INT(mpc[34] | mpc[35] << 8, ==, 2 + 1 + 1 + MPTABLE_IRQS + 2);
	CHECK_INT(rd32(mpc + 36), ==, MPTABLE_LAPIC_ADDR);
	/* Two processors: APIC ids 0 and 1, only the first the boot processor. */
	CHECK(mpc[44] == 0 && mpc[45] == 0 && (mpc[47] & 3) == 3);
	CHECK(mpc[64] == 0 && mpc[65] == 1 && (mpc[67] & 3) == 1);
	/* Then the ISA bus and the IOAPIC with the next id. */
	CHECK(mpc[84] == 1 && memcmp(mpc + 86, "ISA", 3) == 0);
	CHECK(mpc[92] == 2 && mpc[93] == 2 && rd32(mpc + 96) == MPTABLE_IOAPIC_ADDR);
	/* ISA IRQ 5 (the first virtio device) to IOAPIC pin 5. */
	const uint8_t *irq5 = mpc + 100 + 5 * 8;
	CHECK(irq5[0] == 3 && irq5[5] == 5 && irq5[6] == 2 && irq5[7] == 5);
	CHECK_INT(mptable_build(buf, sizeof(buf), 0x9fc00, 0), ==, 0);
	CHECK_INT(mptable_build(buf, n - 1, 0x9fc00, 2), ==, 0);
	CHECK_INT(mptable_build(buf, sizeof(buf), 0x9fc00, 255), ==, 0);
	/* The largest VM's table fits in the reserved area, pointer in the last KiB. */
	CHECK(mptable_size(64) <= BOOT_BASE_END - BOOT_EBDA);
	uint64_t at = (BOOT_BASE_END - mptable_size(64)) & ~15ull;
	CHECK(at + mptable_size(64) - 16 >= 0x9fc00);
}

TEST(cpuid_policy)
{
	struct kvm_cpuid_entry2 e[8];
	memset(e, 0, sizeof(e));
	e[0] = (struct kvm_cpuid_entry2){.function = 1, .ebx = 0xff0a0800, .ecx = 0x81202000};
	e[1] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 0, .edx = 77};
	e[2] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 1};
	e[3] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 2, .ebx = 9};
	e[4] = (struct kvm_cpuid_entry2){.function = 0x40000001, .eax = 0x01007efb};
	e[5] = (struct kvm_cpuid_entry2){.function = 0x40000000, .eax = 0x40000001};
	e[6] = (struct kvm_cpuid_entry2){.function = 0x80000008, .ecx = 0x00010000};
	e[7] = (struct kvm_cpuid_entry2){.function = 0x80000007, .edx = 0x00000120};
	cpu_cpuid_patch(e, 8, 3, 4);
	CHECK_INT(e[0].ebx >> 24, ==, 3);
	CHECK_INT(e[0].ebx & 0xffffff, ==, 0x0a0800);
	CHECK(e[0].ecx & (1u << 31));
	CHECK_INT(e[1].edx, ==, 3);
	CHECK_INT(e[1].ebx, ==, 1);
	CHECK_INT(e[2].ebx, ==, 4);
	CHECK_INT(e[2].eax, ==, 2);
	CHECK_INT((e[2].ecx >> 8) & 0xff, ==, 2);
	CHECK_INT(e[3].ebx, ==, 0);
	CHECK_INT((e[3].ecx >> 8) & 0xff, ==, 0);
	/* PV features: kvm-clock stays, hypercall-based ones go (PV_UNHALT bit 7,
	 * PV_SEND_IPI bit 11, PV_SCHED_YIELD bit 13, ASYNC_PF bit 4). */
	CHECK_INT(e[4].eax, ==, 0x01007efb & CPU_KVM_FEATURES_KEPT);
	CHECK(e[4].eax & (1u << 3));
	CHECK(!(e[4].eax & ((1u << 7) | (1u << 11) | (1u << 13) | (1u << 4))));
	CHECK_INT(e[5].eax, ==, 0x40000001);
	/* AMD: 4 cores in one package, 2 APIC-id bits for them. */
	CHECK_INT(e[6].ecx, ==, 0x00012003);
	/* Invariant TSC hidden (kvm-clock stays the clocksource), other bits kept. */
	CHECK_INT(e[7].edx, ==, 0x00000020);
}

TEST_MAIN(T(e820_small_vm), T(e820_splits_around_the_mmio_gap),
	  T(e820_refuses_tiny_ram_and_small_tables), T(zero_page_fields_at_their_protocol_offsets),
	  T(cmdline_join_and_limits), T(page_tables_identity_map_4_gib),
	  T(gdt_has_the_boot_selectors), T(elf_parse_finds_segments_and_entry),
	  T(elf_parse_refuses_bad_files), T(elf_load_copies_and_zeroes),
	  T(initrd_goes_high_and_above_the_kernel), T(mptable_is_well_formed), T(cpuid_policy))
