/* Which FPU/AVX state instructions KVM runs in guest kernel mode (CPL0, long
 * mode): one fresh VM per instruction; prints "ran", "INTERNAL_ERROR" (the
 * emulator cannot run it) or "SHUTDOWN" (it raised an exception).  Results on
 * PVM: docs/agent-protocol.md, "AVX state".  Build and run on the host:
 *   gcc -O2 -o pvm_cpl0probe pvm_cpl0probe.c bare_kvm.c && ./pvm_cpl0probe */
#include <string.h>
#include <sys/ioctl.h>

#include "bare_kvm.h"

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
	int kvm = bare_kvm_open();
	for (unsigned k = 0; k < sizeof tests / sizeof *tests; k++) {
		if (only >= 0 && (int)k != only)
			continue;
		struct bare_vm b;
		bare_vm_new(&b, kvm, false);
		uint8_t *mem = b.mem;
		int vcpu = b.vcpu;
		struct kvm_run *run = b.run;
		struct kvm_sregs s = bare_sregs(&b, 0, true);
		CHK(ioctl(vcpu, KVM_SET_SREGS, &s));
		bare_set_xcr0(&b, 0xe7);
		struct kvm_regs regs;
		memset(&regs, 0, sizeof regs);
		regs.rflags = 2;
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
		bare_vm_free(&b);
	}
	return 0;
}
