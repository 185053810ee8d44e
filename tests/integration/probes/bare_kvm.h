/* The bare KVM guest the PVM probes share (bare_kvm.c): no Linux, no msb-vmm,
 * 4 MiB of memory at 0, one vCPU in 64-bit mode with the first 2 MiB mapped
 * 1:1 by one large page.  Code goes at 0x1000; the page tables sit at
 * 0x2000-0x4fff.  Build a probe with it:
 *   gcc -O2 -o pvm_swap pvm_swap.c bare_kvm.c */
#ifndef BARE_KVM_H
#define BARE_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BARE_MEM (4u << 20)
#define CHK(x)                      \
	do {                        \
		if ((x) < 0) {      \
			perror(#x); \
			exit(1);    \
		}                   \
	} while (0)

struct bare_vm {
	int vm, vcpu;
	uint8_t *mem;	       /* BARE_MEM bytes, guest physical 0 */
	struct kvm_run *run;   /* the vCPU's shared run structure */
	struct kvm_sregs boot; /* the vCPU's registers as KVM made them */
};

/* /dev/kvm, or exit(1) with the reason. */
int bare_kvm_open(void);

/* A VM on `kvm` with the host's supported CPUID and the page tables; `user`:
 * the pages are user pages (CPL3 may run there).  Exits on failure. */
void bare_vm_new(struct bare_vm *b, int kvm, bool user);
void bare_vm_free(struct bare_vm *b);

/* b->boot set up for 64-bit paging at privilege `cpl` (0 or 3: flat code and
 * data segments of that level); `osxsave` sets CR4.OSXSAVE. */
struct kvm_sregs bare_sregs(const struct bare_vm *b, int cpl, bool osxsave);

/* Set XCR0 (perror when KVM refuses: some probes look at what follows). */
void bare_set_xcr0(const struct bare_vm *b, uint64_t xcr0);

#endif
