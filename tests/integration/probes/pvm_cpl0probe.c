/* Which FPU/AVX state instructions KVM runs in guest kernel mode (CPL0, long
 * mode): one fresh VM per instruction; prints "ran", "INTERNAL_ERROR" (the
 * emulator cannot run it) or "SHUTDOWN" (it raised an exception).  Results on
 * PVM: docs/agent-protocol.md, "AVX state".  Build and run on the host:
 *   gcc -O2 -o pvm_cpl0probe pvm_cpl0probe.c && ./pvm_cpl0probe */
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

struct t {
	const char *name;
	uint8_t code[16];
	int len;
};
/* rdi = 0x10000 (64-byte aligned buffer A), rsi = 0x20000 (B); edx:eax = mask */
static struct t tests[] = {
	{"nop", {0x90}, 1},
	{"fxsave [rdi]", {0x0f, 0xae, 0x07}, 3},
	{"fxrstor [rdi]", {0x0f, 0xae, 0x0f}, 3},
	{"fxsave64 [rdi]", {0x48, 0x0f, 0xae, 0x07}, 4},
	{"fxrstor64 [rdi]", {0x48, 0x0f, 0xae, 0x0f}, 4},
	{"xsave [rdi]", {0x0f, 0xae, 0x27}, 3},
	{"xsave64 [rdi]", {0x48, 0x0f, 0xae, 0x27}, 4},
	{"xsaveopt [rdi]", {0x0f, 0xae, 0x37}, 3},
	{"xsavec [rdi]", {0x0f, 0xc7, 0x27}, 3},
	{"xsaves [rdi]", {0x0f, 0xc7, 0x2f}, 3},
	{"xrstor [rsi]", {0x0f, 0xae, 0x2e}, 3},
	{"xrstors [rsi]", {0x0f, 0xc7, 0x1e}, 3},
	{"xgetbv", {0x31, 0xc9, 0x0f, 0x01, 0xd0}, 5},
	{"movdqu xmm1,[rdi]", {0xf3, 0x0f, 0x6f, 0x0f}, 4},
	{"movdqu [rsi],xmm1", {0xf3, 0x0f, 0x7f, 0x0e}, 4},
	{"vmovdqu ymm1,[rdi]", {0xc5, 0xfe, 0x6f, 0x0f}, 4},
	{"vmovdqu [rsi],ymm1", {0xc5, 0xfe, 0x7f, 0x0e}, 4},
	{"vmovdqa ymm1,[rdi]", {0xc5, 0xfd, 0x6f, 0x0f}, 4},
	{"vmovdqa [rsi],ymm1", {0xc5, 0xfd, 0x7f, 0x0e}, 4},
	{"vmovups [rsi],ymm1", {0xc5, 0xfc, 0x11, 0x0e}, 4},
	{"vextracti128 [rsi],ymm1,1", {0xc4, 0xe3, 0x7d, 0x39, 0x0e, 0x01}, 6},
	{"vzeroupper", {0xc5, 0xf8, 0x77}, 3},
	{"vzeroall", {0xc5, 0xfc, 0x77}, 3},
	{"vmovdqu64 zmm1,[rdi]", {0x62, 0xf1, 0xfe, 0x48, 0x6f, 0x0f}, 6},
	{"vmovdqu64 [rsi],zmm1", {0x62, 0xf1, 0xfe, 0x48, 0x7f, 0x0e}, 6},
	{"kmovq [rsi],k1", {0xc4, 0xe1, 0xf8, 0x91, 0x0e}, 5},
	{"kmovw [rsi],k1", {0xc5, 0xf8, 0x91, 0x0e}, 4},
	{"fwait", {0x9b}, 1},
};

int main(int argc, char **argv)
{
	int only = argc > 1 ? atoi(argv[1]) : -1;
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	CHK(kvm);
	for (unsigned k = 0; k < sizeof tests / sizeof *tests; k++) {
		if (only >= 0 && (int)k != only)
			continue;
		int vm = ioctl(kvm, KVM_CREATE_VM, 0);
		CHK(vm);
		CHK(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000));
		uint8_t *mem =
			mmap(0, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
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
		regs.rflags = 2;
		uint64_t *pml4 = (void *)(mem + 0x2000), *pdpt = (void *)(mem + 0x3000),
			 *pd = (void *)(mem + 0x4000);
		pml4[0] = 0x3000 | 3;
		pdpt[0] = 0x4000 | 3;
		pd[0] = 0x80 | 3;
		s.cr3 = 0x2000;
		s.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (1u << 18);
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
		s.cs = seg;
		seg.type = 3;
		seg.l = 0;
		seg.db = 1;
		seg.selector = 0x10;
		s.ds = s.es = s.fs = s.gs = s.ss = seg;
		CHK(ioctl(vcpu, KVM_SET_SREGS, &s));
		struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs[0] = {.xcr = 0, .value = 0xe7}};
		if (ioctl(vcpu, KVM_SET_XCRS, &x) < 0)
			perror("KVM_SET_XCRS");
		/* patterns in A, and ymm1/zmm1 via KVM_GET/SET_XSAVE left as is */
		for (int i = 0; i < 64; i++)
			mem[0x10000 + i] = 0xa0 + i;
		uint8_t *c = mem + 0x1000;
		int i = 0;
		memcpy(c, tests[k].code, tests[k].len);
		i = tests[k].len;
		c[i++] = 0xe6;
		c[i++] = 0x11;
		c[i++] = 0xf4;
		regs.rip = 0x1000;
		regs.rsp = 0x200000 - 16;
		regs.rdi = 0x10000;
		regs.rsi = 0x20000;
		regs.rax = 0xe7;
		regs.rdx = 0;
		/* xrstor source: a valid header with xstate_bv = 3 (legacy area zero except mxcsr)
		 */
		*(uint32_t *)(mem + 0x20000 + 24) = 0x1f80;
		*(uint64_t *)(mem + 0x20000 + 512) = 3;
		CHK(ioctl(vcpu, KVM_SET_REGS, &regs));
		const char *res = "?";
		char buf[128];
		for (;;) {
			if (ioctl(vcpu, KVM_RUN, 0) < 0) {
				snprintf(buf, sizeof buf, "KVM_RUN: %m");
				res = buf;
				break;
			}
			if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x11) {
				struct kvm_regs rg;
				ioctl(vcpu, KVM_GET_REGS, &rg);
				int nz = 0;
				for (int j = 0; j < 1024; j++)
					nz += mem[0x20000 + j] != (j == 24    ? 0x80
								   : j == 25  ? 0x1f
								   : j == 512 ? 3
									      : 0);
				snprintf(buf, sizeof buf,
					 "ran (rip %#llx, rax %#llx, B bytes changed %d, "
					 "A[512..519]=%02x%02x)",
					 rg.rip, rg.rax, nz, mem[0x10000 + 512],
					 mem[0x10000 + 513]);
				res = buf;
				break;
			}
			if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
				snprintf(buf, sizeof buf, "INTERNAL_ERROR suberror %u",
					 run->internal.suberror);
				res = buf;
				break;
			}
			if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
				struct kvm_regs rg;
				ioctl(vcpu, KVM_GET_REGS, &rg);
				snprintf(buf, sizeof buf, "SHUTDOWN (exception; rip %#llx)",
					 rg.rip);
				res = buf;
				break;
			}
			if (run->exit_reason == KVM_EXIT_HLT) {
				res = "hlt?";
				break;
			}
			snprintf(buf, sizeof buf, "exit %d", run->exit_reason);
			res = buf;
			break;
		}
		printf("%-28s %s\n", tests[k].name, res);
		close(vcpu);
		close(vm);
		munmap(mem, MEM);
	}
	return 0;
}
