/* Does guest user mode (CPL3) run with the guest's XCR0?  Sets guest
 * CR4.OSXSAVE and XCR0 (KVM_SET_XCRS), then runs XGETBV, a YMM load/store or
 * CPUID at CPL3, or XSETBV / a CR4 write at CPL0.  On PVM XGETBV at CPL3 always
 * returns the host's XCR0 (docs/agent-protocol.md, "AVX state").
 *   gcc -O2 -o pvm_xcr0probe pvm_xcr0probe.c
 *   ./pvm_xcr0probe OSXSAVE(0|1) XCR0 xgetbv|ymm|cpuid|xsetbv0|cr4 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#define MEM (4u << 20)
#define CHK(x)                      \
	do {                        \
		if ((x) < 0) {      \
			perror(#x); \
			exit(1);    \
		}                   \
	} while (0)
int main(int argc, char **argv)
{
	int osx = atoi(argv[1]);
	uint64_t xcr0 = strtoull(argv[2], 0, 0);
	const char *t = argv[3];
	int user = strcmp(t, "xsetbv0") != 0 && strcmp(t, "cr4") != 0;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHK(kvm);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	CHK(vm);
	CHK(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000));
	uint8_t *mem = mmap(0, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region r = {.slot = 0,
						.guest_phys_addr = 0,
						.memory_size = MEM,
						.userspace_addr = (uint64_t)mem};
	CHK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r));
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	CHK(vcpu);
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[256];
	} cp = {.c.nent = 256};
	CHK(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cp));
	CHK(ioctl(vcpu, KVM_SET_CPUID2, &cp));
	struct kvm_sregs s;
	CHK(ioctl(vcpu, KVM_GET_SREGS, &s));
	struct kvm_regs regs;
	memset(&regs, 0, sizeof regs);
	uint64_t *pml4 = (void *)(mem + 0x2000), *pdpt = (void *)(mem + 0x3000),
		 *pd = (void *)(mem + 0x4000);
	uint64_t U = user ? 4 : 0;
	pml4[0] = 0x3000 | 3 | U;
	pdpt[0] = 0x4000 | 3 | U;
	pd[0] = 0x80 | 3 | U;
	s.cr3 = 0x2000;
	s.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (osx ? 1u << 18 : 0);
	s.cr0 = 0x80050033 & ~0xcu;
	s.efer = 0x500;
	struct kvm_segment seg = {.base = 0,
				  .limit = 0xffffffff,
				  .selector = 8,
				  .present = 1,
				  .type = 11,
				  .dpl = 0,
				  .db = 0,
				  .s = 1,
				  .l = 1,
				  .g = 1};
	if (user) {
		seg.dpl = 3;
		seg.selector = 0x1b;
	}
	s.cs = seg;
	seg.type = 3;
	seg.l = 0;
	seg.db = 1;
	seg.selector = user ? 0x23 : 0x10;
	s.ds = s.es = s.fs = s.gs = s.ss = seg;
	CHK(ioctl(vcpu, KVM_SET_SREGS, &s));
	struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs[0] = {.xcr = 0, .value = xcr0}};
	if (ioctl(vcpu, KVM_SET_XCRS, &x) < 0)
		perror("KVM_SET_XCRS");
	uint8_t *c = mem + 0x1000;
	int i = 0;
	if (!strcmp(t, "xgetbv")) {
		uint8_t b[] = {0x31, 0xc9, 0x0f, 0x01, 0xd0};
		memcpy(c, b, sizeof b);
		i = sizeof b;
	} else if (!strcmp(t, "ymm")) {
		uint8_t b[] = {0xc5, 0xfe, 0x6f, 0x0f, 0xc5, 0xfe, 0x7f, 0x0e};
		memcpy(c, b, sizeof b);
		i = sizeof b;
	} else if (!strcmp(t, "cpuid")) {
		uint8_t b[] = {0xb8, 1, 0, 0, 0, 0x0f, 0xa2, 0x89, 0xc8};
		memcpy(c, b, sizeof b);
		i = sizeof b;
	} else if (!strcmp(t, "xsetbv0")) {
		uint8_t b[] = {0x31, 0xc9, 0xb8, 3, 0, 0, 0, 0x31, 0xd2, 0x0f, 0x01, 0xd1};
		memcpy(c, b, sizeof b);
		i = sizeof b;
	} else if (!strcmp(t, "cr4")) {
		uint8_t b[] = {0x0f, 0x20, 0xe0, 0x48, 0x0d, 0,	   0,	4,
			       0,    0x0f, 0x22, 0xe0, 0x0f, 0x20, 0xe0};
		memcpy(c, b, sizeof b);
		i = sizeof b;
	}
	c[i++] = 0xe6;
	c[i++] = 0x11;
	c[i++] = 0xf4;
	for (int j = 0; j < 32; j++)
		mem[0x10000 + j] = j + 1;
	regs.rip = 0x1000;
	regs.rsp = 0x200000 - 16;
	regs.rdi = 0x10000;
	regs.rsi = 0x20000;
	regs.rflags = 2 | (user ? 3u << 12 : 0);
	CHK(ioctl(vcpu, KVM_SET_REGS, &regs));
	for (;;) {
		CHK(ioctl(vcpu, KVM_RUN, 0));
		struct kvm_regs rg;
		ioctl(vcpu, KVM_GET_REGS, &rg);
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x11) {
			int same = !memcmp(mem + 0x10000, mem + 0x20000, 32);
			struct kvm_xcrs xo = {0};
			ioctl(vcpu, KVM_GET_XCRS, &xo);
			struct kvm_sregs so;
			ioctl(vcpu, KVM_GET_SREGS, &so);
			printf("osxsave=%d xcr0=%#llx %s: ran, rax=%#llx rdx=%#llx copy32=%s vcpu "
			       "xcr0=%#llx cr4=%#llx\n",
			       osx, (unsigned long long)xcr0, t, rg.rax, rg.rdx, same ? "ok" : "no",
			       xo.xcrs[0].value, so.cr4);
			return 0;
		}
		printf("osxsave=%d xcr0=%#llx %s: exit %d (rip %#llx) suberr %u\n", osx,
		       (unsigned long long)xcr0, t, run->exit_reason, rg.rip,
		       run->internal.suberror);
		return 0;
	}
}
