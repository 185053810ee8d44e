/* The mechanism of src/vmm/avx.c, checked without Linux: CPL3 loads a
 * per-task pattern into ymm1, the vCPU runs emulated CPL0 code (fxsave,
 * fxrstor, out), the VMM swaps the AVX components with KVM_GET_XSAVE and
 * KVM_SET_XSAVE, and back at CPL3 ymm1's upper half must be the other task's.
 * `noswap` is the control (the upper half stays: the leak).
 *   gcc -O2 -o pvm_swap pvm_swap.c bare_kvm.c && ./pvm_swap 2000 && ./pvm_swap 2000 noswap */
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "bare_kvm.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}
#define AVX_LO 576
#define AVX_HI 2688
int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 1000;
	int noswap = argc > 2 && !strcmp(argv[2], "noswap");
	struct bare_vm b;
	bare_vm_new(&b, bare_kvm_open(), true);
	uint8_t *mem = b.mem;
	int vcpu = b.vcpu;
	struct kvm_run *run = b.run;
	struct kvm_sregs s0 = bare_sregs(&b, 0, true), s3 = bare_sregs(&b, 3, true);
	bare_set_xcr0(&b, 0xe7);
	/* patterns: task t's ymm1 at 0x10000 + 32*t */
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < 32; i++)
			mem[0x10000 + 32 * t + i] = (uint8_t)(0x10 * (t + 1) + i);
	/* CPL3 "load": vmovdqu ymm1,[rdi]; out 0x20,al */
	uint8_t load[] = {0xc5, 0xfe, 0x6f, 0x0f, 0xe6, 0x20};
	/* CPL0 "switch": fxsave [0x30000]; fxrstor [0x30000]; out 0x21,al */
	uint8_t sw[] = {0x0f, 0xae, 0x04, 0x25, 0, 0, 3, 0,    0x0f,
			0xae, 0x0c, 0x25, 0,	0, 3, 0, 0xe6, 0x21};
	/* CPL3 "check": vmovdqu [rsi],ymm1; out 0x22,al */
	uint8_t chk[] = {0xc5, 0xfe, 0x7f, 0x0e, 0xe6, 0x22};
	memcpy(mem + 0x1000, load, sizeof load);
	memcpy(mem + 0x1100, sw, sizeof sw);
	memcpy(mem + 0x1200, chk, sizeof chk);
	static struct kvm_xsave xs, saved[2];
	int have[2] = {0, 0};
	double tswap = 0;
	int bad = 0;
	for (int round = 0; round < rounds; round++) {
		int t = round & 1, next = 1 - t;
		/* task t runs at CPL3 and loads its pattern (first time) or just goes on */
		struct kvm_regs rg = {.rip = 0x1000,
				      .rsp = 0x1f0000,
				      .rflags = 2 | (3u << 12),
				      .rdi = 0x10000 + 32 * t,
				      .rsi = 0x20000};
		CHK(ioctl(vcpu, KVM_SET_SREGS, &s3));
		CHK(ioctl(vcpu, KVM_SET_REGS, &rg));
		CHK(ioctl(vcpu, KVM_RUN, 0));
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x20) {
			printf("load: exit %d\n", run->exit_reason);
			return 1;
		}
		/* into the "kernel" (emulated CPL0): fxsave/fxrstor, then the switch exit */
		rg = (struct kvm_regs){.rip = 0x1100, .rsp = 0x1f0000, .rflags = 2};
		CHK(ioctl(vcpu, KVM_SET_SREGS, &s0));
		CHK(ioctl(vcpu, KVM_SET_REGS, &rg));
		CHK(ioctl(vcpu, KVM_RUN, 0));
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x21) {
			printf("switch: exit %d suberror %u\n", run->exit_reason,
			       run->internal.suberror);
			return 1;
		}
		double t0 = now();
		CHK(ioctl(vcpu, KVM_GET_XSAVE, &xs));
		saved[t] = xs;
		have[t] = 1;
		if (have[next] && !noswap) {
			memcpy((uint8_t *)xs.region + AVX_LO,
			       (uint8_t *)saved[next].region + AVX_LO, AVX_HI - AVX_LO);
			CHK(ioctl(vcpu, KVM_SET_XSAVE, &xs));
		}
		tswap += now() - t0;
		/* task next at CPL3: its ymm1 upper half must be its own pattern */
		rg = (struct kvm_regs){
			.rip = 0x1200, .rsp = 0x1f0000, .rflags = 2 | (3u << 12), .rsi = 0x20000};
		CHK(ioctl(vcpu, KVM_SET_SREGS, &s3));
		CHK(ioctl(vcpu, KVM_SET_REGS, &rg));
		CHK(ioctl(vcpu, KVM_RUN, 0));
		if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x22) {
			printf("check: exit %d\n", run->exit_reason);
			return 1;
		}
		if (have[next] &&
		    memcmp(mem + 0x20000 + 16, mem + 0x10000 + 32 * next + 16, 16) != 0)
			bad++;
		if (!have[next] && memcmp(mem + 0x20000 + 16, mem + 0x10000 + 32 * t + 16, 16) != 0)
			bad++; /* no swap: still t's */
			       /* control: without the swap the upper half is task t's (the leak) */
	}
	printf("rounds %d, wrong upper halves %d, GET+SET_XSAVE %.1f us per switch\n", rounds, bad,
	       tswap * 1e6 / rounds);
	return bad != 0;
}
