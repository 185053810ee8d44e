/* Does guest user mode (CPL3) run with the guest's XCR0?  Sets guest
 * CR4.OSXSAVE and XCR0 (KVM_SET_XCRS), then runs XGETBV, a YMM load/store or
 * CPUID at CPL3, or XSETBV / a CR4 write at CPL0.  On PVM XGETBV at CPL3 always
 * returns the host's XCR0 (docs/agent-protocol.md, "AVX state").
 *   gcc -O2 -o pvm_xcr0probe pvm_xcr0probe.c bare_kvm.c
 *   ./pvm_xcr0probe OSXSAVE(0|1) XCR0 xgetbv|ymm|cpuid|xsetbv0|cr4 */
#include <string.h>
#include <sys/ioctl.h>

#include "bare_kvm.h"

int main(int argc, char **argv)
{
	int osx = atoi(argv[1]);
	uint64_t xcr0 = strtoull(argv[2], 0, 0);
	const char *t = argv[3];
	int user = strcmp(t, "xsetbv0") != 0 && strcmp(t, "cr4") != 0;
	struct bare_vm b;
	bare_vm_new(&b, bare_kvm_open(), user);
	uint8_t *mem = b.mem;
	int vcpu = b.vcpu;
	struct kvm_run *run = b.run;
	struct kvm_sregs s = bare_sregs(&b, user ? 3 : 0, osx);
	CHK(ioctl(vcpu, KVM_SET_SREGS, &s));
	bare_set_xcr0(&b, xcr0);
	struct kvm_regs regs;
	memset(&regs, 0, sizeof regs);
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
