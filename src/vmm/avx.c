/* AVX state switching on behalf of a noxsave guest kernel (avx.h). */
#include "vmm/avx.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "vmm/vm.h"

#define XSTATE_BV_OFFSET 512u

static const struct {
	unsigned bit, offset, size;
} components[] = {{2, 576, 256}, {5, 1088, 64}, {6, 1152, 512}, {7, 1664, 1024}};

/* The components KVM_SET_XSAVE takes for this guest; narrowed to YMM alone
 * the first time KVM refuses AVX-512 state (a guest CPUID without it). */
static _Atomic uint64_t settable = 0xe4;

void avx_port_write(struct vcpu *c, uint16_t port, uint32_t value)
{
	uint64_t gpa = (uint64_t)value << 6;
	uint8_t *area = gm_ptr(&c->vm->mem, gpa + AVX_AREA_START, AVX_AREA_END - AVX_AREA_START);
	if (!area) {
		msb_debug("vCPU %u: AVX area at 0x%llx is outside guest RAM", c->id,
			  (unsigned long long)gpa);
		return;
	}
	area -= AVX_AREA_START; /* offsets below are from the start of the register area */
	struct kvm_xsave xs;
	if (ioctl(c->fd, KVM_GET_XSAVE, &xs) < 0) {
		msb_warn("vCPU %u: KVM_GET_XSAVE: %s", c->id, strerror(errno));
		return;
	}
	uint8_t *reg = (uint8_t *)xs.region;
	uint64_t bv;
	memcpy(&bv, reg + XSTATE_BV_OFFSET, sizeof(bv));
	if (port == AVX_SAVE_PORT) {
		/* A component in its init state (bit clear) is all zeros. */
		for (size_t i = 0; i < sizeof(components) / sizeof(*components); i++) {
			uint8_t *dst = area + components[i].offset;
			if (bv & (1ull << components[i].bit))
				memcpy(dst, reg + components[i].offset, components[i].size);
			else
				memset(dst, 0, components[i].size);
		}
		return;
	}
	memcpy(reg + AVX_AREA_START, area + AVX_AREA_START, AVX_AREA_END - AVX_AREA_START);
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t want = (bv & ~0xe4ull) | atomic_load(&settable);
		memcpy(reg + XSTATE_BV_OFFSET, &want, sizeof(want));
		if (ioctl(c->fd, KVM_SET_XSAVE, &xs) == 0)
			return;
		if (errno != EINVAL || atomic_load(&settable) == 0x04)
			break;
		atomic_store(&settable, 0x04);
	}
	msb_warn("vCPU %u: KVM_SET_XSAVE: %s", c->id, strerror(errno));
}
