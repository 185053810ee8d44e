#include "vmm/cpu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "vmm/boot.h"

#define CPUID_MAX_ENTRIES 256

#define MSR_IA32_TSC		0x10
#define MSR_IA32_SYSENTER_CS	0x174
#define MSR_IA32_SYSENTER_ESP	0x175
#define MSR_IA32_SYSENTER_EIP	0x176
#define MSR_IA32_MISC_ENABLE	0x1a0
#define MSR_STAR		0xc0000081
#define MSR_LSTAR		0xc0000082
#define MSR_CSTAR		0xc0000083
#define MSR_SYSCALL_MASK	0xc0000084
#define MSR_KERNEL_GS_BASE	0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1

#define APIC_LVT0    0x350
#define APIC_LVT1    0x360
#define APIC_EXTINT  0x7
#define APIC_NMI     0x4
#define CR0_BOOT     0x80050033ull /* PE MP ET NE WP AM PG */
#define CR4_PAE	     0x20ull
#define EFER_LME_LMA 0x500ull

struct kvm_cpuid2 *cpu_supported_cpuid(int kvm_fd, struct msb_err *err)
{
	size_t sz = sizeof(struct kvm_cpuid2) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sz);
	if (!c) {
		msb_err_sys(err, "allocating the CPUID table");
		return NULL;
	}
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		msb_err_sys(err, "KVM_GET_SUPPORTED_CPUID");
		free(c);
		return NULL;
	}
	return c;
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

void cpu_cpuid_patch(struct kvm_cpuid_entry2 *e, unsigned n, unsigned id, unsigned ncpus)
{
	for (unsigned i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *x = &e[i];
		switch (x->function) {
		case 1:
			/* EBX[31:24] initial APIC id; ECX bit 31: running on a hypervisor. */
			x->ebx = (x->ebx & 0x00ffffffu) | (id << 24);
			x->ecx |= 1u << 31;
			break;
		case 0xb:
		case 0x1f:
			/* Topology: one thread per core, ncpus cores in one package. */
			x->edx = id;
			if (x->index == 0) {
				x->eax = 0;
				x->ebx = 1;
				x->ecx = (1u << 8) | 0; /* level type SMT */
			} else if (x->index == 1) {
				x->eax = bits_for(ncpus);
				x->ebx = ncpus;
				x->ecx = (2u << 8) | 1; /* level type core */
			} else {
				x->eax = 0;
				x->ebx = 0;
				x->ecx = x->index & 0xff; /* invalid level: end of list */
			}
			break;
		case 0x80000008:
			/* AMD: ECX[7:0] cores per package - 1, ECX[15:12] APIC-id bits
			 * for the core; without them each vCPU is its own package. */
			x->ecx = (x->ecx & ~0xf0ffu) | ((ncpus - 1) & 0xff) |
				 (bits_for(ncpus) << 12);
			break;
		case 0x40000001:
			x->eax &= CPU_KVM_FEATURES_KEPT;
			break;
		case 0x80000007:
			/* No invariant TSC: with it Linux prefers the TSC to kvm-clock,
			 * and a restored guest's TSC (the host's, on PVM) jumps by the
			 * snapshot's age; kvm-clock stands still (docs/snapshot.md). */
			x->edx &= ~CPU_INVARIANT_TSC;
			break;
		default:
			break;
		}
	}
}

static int set_cpuid(int fd, const struct kvm_cpuid2 *base, unsigned id, unsigned ncpus,
		     struct msb_err *err)
{
	size_t sz = sizeof(*base) + base->nent * sizeof(base->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	if (!c)
		return msb_err_sys(err, "allocating the CPUID table");
	memcpy(c, base, sz);
	cpu_cpuid_patch(c->entries, c->nent, id, ncpus);
	int r = ioctl(fd, KVM_SET_CPUID2, c);
	int saved = errno;
	free(c);
	if (r < 0) {
		errno = saved;
		return msb_err_sys(err, "KVM_SET_CPUID2");
	}
	return 0;
}

static void set_boot_msrs(int fd, unsigned id)
{
	static const uint32_t idx[] = {MSR_IA32_SYSENTER_CS,
				       MSR_IA32_SYSENTER_ESP,
				       MSR_IA32_SYSENTER_EIP,
				       MSR_STAR,
				       MSR_CSTAR,
				       MSR_KERNEL_GS_BASE,
				       MSR_SYSCALL_MASK,
				       MSR_LSTAR,
				       MSR_IA32_TSC,
				       MSR_IA32_MISC_ENABLE};
	enum { N = sizeof(idx) / sizeof(idx[0]) };
	_Alignas(struct kvm_msrs)
		uint8_t buf[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	struct kvm_msrs *m = (struct kvm_msrs *)buf;
	memset(buf, 0, sizeof(buf));
	/* One at a time: KVM_SET_MSRS stops at the first MSR it refuses, and a
	 * refusal (PVM refuses some) must not cost the ones after it. */
	for (unsigned i = 0; i < N; i++) {
		m->nmsrs = 1;
		m->entries[0].index = idx[i];
		m->entries[0].data = idx[i] == MSR_IA32_MISC_ENABLE ? MISC_ENABLE_FAST_STRING : 0;
		if (ioctl(fd, KVM_SET_MSRS, m) != 1)
			msb_debug("vCPU %u: KVM refused boot MSR 0x%x (ignored)", id, idx[i]);
	}
}

static int set_lint(int fd, struct msb_err *err)
{
	struct kvm_lapic_state l;
	if (ioctl(fd, KVM_GET_LAPIC, &l) < 0)
		return msb_err_sys(err, "KVM_GET_LAPIC");
	uint32_t v0, v1;
	memcpy(&v0, l.regs + APIC_LVT0, 4);
	memcpy(&v1, l.regs + APIC_LVT1, 4);
	v0 = (v0 & ~0x700u) | (APIC_EXTINT << 8);
	v1 = (v1 & ~0x700u) | (APIC_NMI << 8);
	memcpy(l.regs + APIC_LVT0, &v0, 4);
	memcpy(l.regs + APIC_LVT1, &v1, 4);
	if (ioctl(fd, KVM_SET_LAPIC, &l) < 0)
		return msb_err_sys(err, "KVM_SET_LAPIC");
	return 0;
}

int cpu_setup(int vcpu_fd, const struct kvm_cpuid2 *base, unsigned id, unsigned ncpus,
	      struct msb_err *err)
{
	if (set_cpuid(vcpu_fd, base, id, ncpus, err) < 0)
		return -1;
	set_boot_msrs(vcpu_fd, id);
	struct kvm_fpu fpu;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return msb_err_sys(err, "KVM_SET_FPU");
	return set_lint(vcpu_fd, err);
}

int cpu_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page, struct msb_err *err)
{
	struct kvm_sregs s;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return msb_err_sys(err, "KVM_GET_SREGS");
	struct kvm_segment code = {.base = 0,
				   .limit = 0xffffffff,
				   .selector = BOOT_SEL_CODE,
				   .type = 0xb,
				   .present = 1,
				   .dpl = 0,
				   .db = 0,
				   .s = 1,
				   .l = 1,
				   .g = 1};
	struct kvm_segment data = code;
	data.selector = BOOT_SEL_DATA;
	data.type = 0x3;
	data.l = 0;
	data.db = 1;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.gdt.base = BOOT_GDT;
	s.gdt.limit = 4 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = CR0_BOOT;
	s.cr3 = BOOT_PML4;
	s.cr4 = CR4_PAE;
	s.efer = EFER_LME_LMA;
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
		return msb_err_sys(err, "KVM_SET_SREGS");
	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 0x2;
	r.rip = entry;
	r.rsi = zero_page;
	r.rsp = BOOT_STACK_TOP;
	r.rbp = BOOT_STACK_TOP;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &r) < 0)
		return msb_err_sys(err, "KVM_SET_REGS");
	return 0;
}

int cpu_translate(const struct guest_mem *m, int paging, uint64_t cr3, uint64_t va, uint64_t *gpa)
{
	if (!paging) {
		*gpa = va;
		return 0;
	}
	const uint64_t addr_mask = 0x000ffffffffff000ull;
	uint64_t table = cr3 & addr_mask;
	for (int level = 3; level >= 0; level--) {
		unsigned idx = (unsigned)(va >> (12 + 9 * level)) & 511;
		uint64_t pte;
		if (gm_read(m, table + idx * 8ull, &pte, sizeof(pte)) < 0 || !(pte & 1))
			return -1;
		/* A large page at the PDPT (1 GiB) or PD (2 MiB) level. */
		if ((level == 2 || level == 1) && (pte & 0x80)) {
			uint64_t span = 1ull << (12 + 9 * level);
			*gpa = (pte & addr_mask & ~(span - 1)) | (va & (span - 1));
			return 0;
		}
		table = pte & addr_mask;
	}
	*gpa = table | (va & 0xfff);
	return 0;
}

static void dump_seg(int fd, const char *name, const struct kvm_segment *s)
{
	dprintf(fd, "%-3s=%04x %016llx %08x type=%x dpl=%u p=%u s=%u l=%u db=%u g=%u\n", name,
		s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->present,
		s->s, s->l, s->db, s->g);
}

void cpu_dump(int vcpu_fd, const struct guest_mem *m, unsigned id, const char *why, int fd)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	dprintf(fd, "msb-vmm: vCPU %u: %s\n", id, why);
	if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0) {
		dprintf(fd, "(registers unavailable: %s)\n", strerror(errno));
		return;
	}
	dprintf(fd, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n", r.rax, r.rbx, r.rcx,
		r.rdx);
	dprintf(fd, "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n", r.rsi, r.rdi, r.rbp,
		r.rsp);
	dprintf(fd, "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n", r.r8, r.r9, r.r10, r.r11);
	dprintf(fd, "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n", r.r12, r.r13, r.r14,
		r.r15);
	dprintf(fd, "RIP=%016llx RFL=%08llx\n", r.rip, r.rflags);
	dump_seg(fd, "CS", &s.cs);
	dump_seg(fd, "SS", &s.ss);
	dump_seg(fd, "DS", &s.ds);
	dump_seg(fd, "TR", &s.tr);
	dprintf(fd, "GDT=%016llx %04x IDT=%016llx %04x\n", (unsigned long long)s.gdt.base,
		s.gdt.limit, (unsigned long long)s.idt.base, s.idt.limit);
	dprintf(fd, "CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx EFER=%llx APIC_BASE=%llx\n",
		s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.apic_base);
	/* Code bytes: 16 before RIP and 16 from it, RIP's in <>. */
	char line[160];
	int n = snprintf(line, sizeof(line), "Code=");
	uint64_t lin = s.cs.base + r.rip;
	for (int i = -16; i < 16; i++) {
		uint64_t gpa;
		uint8_t b;
		int ok = cpu_translate(m, (int)(s.cr0 >> 31) & 1, s.cr3, lin + (uint64_t)(int64_t)i,
				       &gpa) == 0 &&
			 gm_read(m, gpa, &b, 1) == 0;
		char hex[3] = "??";
		if (ok)
			snprintf(hex, sizeof(hex), "%02x", b);
		n += snprintf(line + n, sizeof(line) - (size_t)n, i == 0 ? "<%s> " : "%s ", hex);
	}
	dprintf(fd, "%s\n", line);
}
