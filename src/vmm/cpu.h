/* Per-vCPU set-up: CPUID, boot MSRs, FPU, local APIC, the long-mode boot
 * state, and the register dump printed when the guest dies.
 *
 * The CPUID policy (cpu_cpuid_patch) is a pure function so it can be tested:
 * each vCPU gets its own APIC id in leaves 1, 0xB and 0x1F, all vCPUs are
 * cores of one package (0xB/0x1F, and 0x80000008 for AMD), the hypervisor bit
 * is set, and KVM paravirtual features that work through hypercalls (which
 * hang the vCPU on the PVM hosts we run on) or that msb-vmm does not support
 * are hidden in leaf 0x40000001.  Kept: kvm-clock (both MSR sets), its stable
 * bit, and NOP_IO_DELAY.  The invariant-TSC bit is hidden so the guest keeps
 * kvm-clock as its clocksource (a restore sets it back to the snapshot's time).
 */
#ifndef MSB_VMM_CPU_H
#define MSB_VMM_CPU_H

#include <linux/kvm.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/guest_mem.h"

/* Leaf 0x80000007 EDX: invariant TSC, hidden (QEMU hides it by default too:
 * it breaks snapshots and migration). */
#define CPU_INVARIANT_TSC (1u << 8)

/* Bits of leaf 0x40000001 EAX a guest may see. */
#define CPU_KVM_FEATURES_KEPT ((1u << 0) | (1u << 1) | (1u << 3) | (1u << 24))

/* KVM_GET_SUPPORTED_CPUID into a malloc'd list the caller frees. */
struct kvm_cpuid2 *cpu_supported_cpuid(int kvm_fd, struct msb_err *err);

/* Apply msb-vmm's CPUID policy for vCPU `id` of `ncpus` to `e[0..n)` in place. */
void cpu_cpuid_patch(struct kvm_cpuid_entry2 *e, unsigned n, unsigned id, unsigned ncpus);

/* CPUID (a patched copy of `base`), boot MSRs (a refused MSR is only logged:
 * PVM refuses some), FPU control words, LINT0 = ExtINT and LINT1 = NMI in the
 * in-kernel local APIC. */
int cpu_setup(int vcpu_fd, const struct kvm_cpuid2 *base, unsigned id, unsigned ncpus,
	      struct msb_err *err);

/* The boot vCPU's state for the 64-bit boot protocol: long mode, paging on
 * the boot page tables, the boot GDT's flat segments, interrupts off,
 * RIP = entry, RSI = zero page (boot.h). */
int cpu_set_boot_regs(int vcpu_fd, uint64_t entry, uint64_t zero_page, struct msb_err *err);

/* Guest physical address of the linear address `va` under 4-level paging
 * rooted at `cr3`, walking the tables in `m`; identity when `paging` is 0.
 * -1 when unmapped or a table lies outside RAM. */
int cpu_translate(const struct guest_mem *m, int paging, uint64_t cr3, uint64_t va, uint64_t *gpa);

/* Print the registers, segments, control registers and the code bytes around
 * RIP to `fd` (stderr in msb-vmm), prefixed by `why`. */
void cpu_dump(int vcpu_fd, const struct guest_mem *m, unsigned id, const char *why, int fd);

#endif
