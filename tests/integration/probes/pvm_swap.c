/* The mechanism of src/vmm/avx.c, checked without Linux: CPL3 loads a
 * per-task pattern into ymm1, the vCPU runs emulated CPL0 code (fxsave,
 * fxrstor, out), the VMM swaps the AVX components with KVM_GET_XSAVE and
 * KVM_SET_XSAVE, and back at CPL3 ymm1's upper half must be the other task's.
 * `noswap` is the control (the upper half stays: the leak).
 *   gcc -O2 -o pvm_swap pvm_swap.c && ./pvm_swap 2000 && ./pvm_swap 2000 noswap */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <fcntl.h>
#include <time.h>
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
	struct kvm_sregs s0, s3;
	CHK(ioctl(vcpu, KVM_GET_SREGS, &s0));
	uint64_t *pml4 = (void *)(mem + 0x2000), *pdpt = (void *)(mem + 0x3000),
		 *pd = (void *)(mem + 0x4000);
	pml4[0] = 0x3000 | 7;
	pdpt[0] = 0x4000 | 7;
	pd[0] = 0x80 | 7;
	s0.cr3 = 0x2000;
	s0.cr4 = (1u << 5) | (1u << 9) | (1u << 10) | (1u << 18);
	s0.cr0 = 0x80050033 & ~0xcu;
	s0.efer = 0x500;
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
	s0.cs = seg;
	seg.type = 3;
	seg.l = 0;
	seg.db = 1;
	seg.selector = 0x10;
	s0.ds = s0.es = s0.fs = s0.gs = s0.ss = seg;
	s3 = s0;
	seg.dpl = 3;
	seg.selector = 0x23;
	s3.ds = s3.es = s3.fs = s3.gs = s3.ss = seg;
	seg.type = 11;
	seg.l = 1;
	seg.db = 0;
	seg.selector = 0x1b;
	s3.cs = seg;
	struct kvm_xcrs x = {.nr_xcrs = 1, .xcrs[0] = {.xcr = 0, .value = 0xe7}};
	CHK(ioctl(vcpu, KVM_SET_XCRS, &x));
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
