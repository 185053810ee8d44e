/* AVX state switching for a guest kernel that cannot do it itself.
 *
 * On a PVM host the guest kernel runs emulated and boots with noxsave: the
 * emulator runs neither XSAVE/XRSTOR nor any VEX instruction at CPL0, while
 * guest user space runs natively with the host's XCR0 (AVX, AVX-512).  The
 * kernel patch kernel/patches/0006-pvm-avx-state-via-vmm.patch (enabled by
 * `msb_pvm.avx` on the command line) therefore asks msb-vmm on each FPU
 * state save and load: a 32-bit OUT of (guest physical address of the task's
 * register area >> 6) to AVX_SAVE_PORT copies the vCPU's AVX components
 * (KVM_GET_XSAVE) to that area at their XSAVE standard offsets, to
 * AVX_LOAD_PORT loads them from it (KVM_SET_XSAVE).  docs/vmm.md. */
#ifndef MSB_VMM_AVX_H
#define MSB_VMM_AVX_H

#include <stdint.h>

#define AVX_SAVE_PORT 0x512
#define AVX_LOAD_PORT 0x513
/* YMM upper halves (576, 256 bytes), opmask (1088, 64), ZMM upper halves
 * (1152, 512), ZMM16-31 (1664, 1024): XSAVE components 2, 5, 6 and 7. */
#define AVX_AREA_START 576u
#define AVX_AREA_END   2688u

struct vcpu;

/* Handles one OUT to AVX_SAVE_PORT or AVX_LOAD_PORT on the vCPU's own thread.
 * `value` comes from the guest: an address outside guest RAM is ignored. */
void avx_port_write(struct vcpu *c, uint16_t port, uint32_t value);

#endif
