/* Is /dev/kvm a PVM host (guest kernel mode emulated instruction by instruction)?
 *
 * On PVM the guest kernel needs command-line workarounds (MSB_PVM_CMDLINE) for
 * instructions its emulator cannot run; on hardware KVM the same workarounds
 * are wrong: `noxsave` makes the guest kernel save only x87/SSE state on task
 * switches while user space uses AVX, so YMM/ZMM contents leak between
 * processes.  msb-vmm appends them only when this says PVM, and the base
 * snapshot key includes the answer.  docs/vmm.md, "PVM hosts". */
#ifndef MSB_COMMON_PVM_H
#define MSB_COMMON_PVM_H

#include <stdbool.h>

#include "common/error.h"

/* What the PVM emulator cannot run at CPL0 (xrstor, popcnt, cmpxchg16b, ...;
 * the rest precautionary) and the "enhanced REP MOVSB" copies it runs one byte
 * per step (erms, fsrm); msb_pvm.avx has the kernel ask msb-vmm to switch the
 * AVX state that noxsave leaves alone (src/vmm/avx.h).  Why each:
 * docs/kernel.md. */
#define MSB_PVM_CMDLINE                                                                          \
	"noxsave clearcpuid=erms,fsrm,popcnt,cx16,fsgsbase,invpcid,pcid,smap,rdrand,clflushopt," \
	"clwb,movbe,aes,avx msb_pvm.avx"

struct msb_pvm {
	bool pvm;
	const char
		*why; /* static text: what decided it ("MSB_PVM=1", "/sys/module/kvm_pvm exists") */
};

/* Decides from the environment variable's value (NULL or "" when unset: "1"
 * forces PVM, "0" forces hardware KVM) and else from the host below `root`
 * ("" for this host; a test passes a fake tree): `sys/module/kvm_pvm` means PVM,
 * `sys/module/kvm_intel` or `kvm_amd` hardware KVM; without either, a
 * `proc/cpuinfo` whose flags have neither vmx nor svm means PVM (KVM without
 * hardware virtualization).  Nothing known: hardware KVM.  -1 (usage) only for
 * a malformed MSB_PVM value. */
int msb_pvm_detect(const char *root, const char *env, struct msb_pvm *out, struct msb_err *err);

/* msb_pvm_detect("", getenv("MSB_PVM")): a few stat calls, no caching. */
int msb_pvm_host(struct msb_pvm *out, struct msb_err *err);

/* What msb-vmm appends to the base command line `base` (NULL: "") on the host
 * `pvm` describes: MSB_PVM_CMDLINE on PVM unless `base` carries the
 * workarounds already (an older cmdline.txt has noxsave), else NULL.  The one
 * rule for msb-vmm's boot and the base snapshot key msb computes. */
const char *msb_pvm_cmdline_extra(const struct msb_pvm *pvm, const char *base);

#endif
