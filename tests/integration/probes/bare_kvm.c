/* The bare KVM guest the PVM probes share (bare_kvm.h). */
#include "bare_kvm.h"

#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int bare_kvm_open(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHK(kvm);
	return kvm;
}

void bare_vm_new(struct bare_vm *b, int kvm, bool user)
{
	b->vm = ioctl(kvm, KVM_CREATE_VM, 0);
	CHK(b->vm);
	CHK(ioctl(b->vm, KVM_SET_TSS_ADDR, 0xfffbd000));
	b->mem = mmap(0, BARE_MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (b->mem == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	struct kvm_userspace_memory_region r = {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = BARE_MEM,
		.userspace_addr = (uint64_t)b->mem,
	};
	CHK(ioctl(b->vm, KVM_SET_USER_MEMORY_REGION, &r));
	b->vcpu = ioctl(b->vm, KVM_CREATE_VCPU, 0);
	CHK(b->vcpu);
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	CHK(sz);
	b->run = mmap(0, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, b->vcpu, 0);
	if (b->run == MAP_FAILED) {
		perror("mmap kvm_run");
		exit(1);
	}
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cp = {.c.nent = 256};
	CHK(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cp));
	CHK(ioctl(b->vcpu, KVM_SET_CPUID2, &cp));
	CHK(ioctl(b->vcpu, KVM_GET_SREGS, &b->boot));
	/* PML4 -> PDPT -> one 2 MiB page at 0, present and writable. */
	uint64_t u = user ? 4 : 0;
	uint64_t *pml4 = (void *)(b->mem + 0x2000), *pdpt = (void *)(b->mem + 0x3000),
		 *pd = (void *)(b->mem + 0x4000);
	pml4[0] = 0x3000 | 3 | u;
	pdpt[0] = 0x4000 | 3 | u;
	pd[0] = 0x80 | 3 | u;
}

void bare_vm_free(struct bare_vm *b)
{
	close(b->vcpu);
	close(b->vm);
	munmap(b->mem, BARE_MEM);
}

struct kvm_sregs bare_sregs(const struct bare_vm *b, int cpl, bool osxsave)
{
	struct kvm_sregs s = b->boot;
	s.cr3 = 0x2000;
	/* PAE, OSFXSR, OSXMMEXCPT (+ OSXSAVE); paging, protection, WP, NE, no
	 * TS/EM; long mode active. */
	s.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (osxsave ? 1u << 18 : 0);
	s.cr0 = 0x80050033 & ~0xcu;
	s.efer = 0x500;
	struct kvm_segment seg = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = cpl ? 0x1b : 8,
		.present = 1,
		.type = 11,
		.dpl = (uint8_t)cpl,
		.db = 0,
		.s = 1,
		.l = 1,
		.g = 1,
	};
	s.cs = seg;
	seg.type = 3;
	seg.l = 0;
	seg.db = 1;
	seg.selector = cpl ? 0x23 : 0x10;
	s.ds = s.es = s.fs = s.gs = s.ss = seg;
	return s;
}

void bare_set_xcr0(const struct bare_vm *b, uint64_t xcr0)
{
	struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs[0] = {.xcr = 0, .value = xcr0}};
	if (ioctl(b->vcpu, KVM_SET_XCRS, &x) < 0)
		perror("KVM_SET_XCRS");
}
