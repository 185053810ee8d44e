/* Reading a VM's KVM state into a snapshot and loading it into a new VM
 * (snapshot.h).  Verified on PVM: research notes, section 10. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

#define MSR_LIST_MAX SNAP_MAX_MSRS

/* KVM_GET_MSR_INDEX_LIST into a malloc'd array (*n entries). */
static uint32_t *msr_index_list(int kvm_fd, uint32_t *n, struct msb_err *err)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MSR_LIST_MAX * sizeof(uint32_t));
	if (!l) {
		msb_err_sys(err, "allocating the MSR list");
		return NULL;
	}
	l->nmsrs = MSR_LIST_MAX;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		msb_err_sys(err, "KVM_GET_MSR_INDEX_LIST");
		free(l);
		return NULL;
	}
	uint32_t *idx = malloc((l->nmsrs ? l->nmsrs : 1) * sizeof(uint32_t));
	if (idx) {
		memcpy(idx, l->indices, l->nmsrs * sizeof(uint32_t));
		*n = l->nmsrs;
	} else {
		msb_err_sys(err, "allocating the MSR list");
	}
	free(l);
	return idx;
}

static struct kvm_msrs *msr_buf(void)
{
	return calloc(1, sizeof(struct kvm_msrs) + MSR_LIST_MAX * sizeof(struct kvm_msr_entry));
}

/* Every MSR of `idx` that KVM_GET_MSRS returns.  KVM stops at the first MSR
 * it refuses; that one is skipped and the rest asked again. */
static int get_msrs(int fd, const uint32_t *idx, uint32_t n, struct snap_vcpu *v,
		    struct msb_err *err)
{
	struct kvm_msrs *b = msr_buf();
	v->msrs = calloc(n ? n : 1, sizeof(*v->msrs));
	if (!b || !v->msrs) {
		free(b);
		return msb_err_sys(err, "allocating MSRs");
	}
	uint32_t done = 0;
	v->nmsrs = 0;
	while (done < n) {
		uint32_t k = n - done;
		memset(b, 0, sizeof(*b) + k * sizeof(b->entries[0]));
		b->nmsrs = k;
		for (uint32_t i = 0; i < k; i++)
			b->entries[i].index = idx[done + i];
		int got = ioctl(fd, KVM_GET_MSRS, b);
		if (got < 0) {
			free(b);
			return msb_err_sys(err, "KVM_GET_MSRS");
		}
		memcpy(v->msrs + v->nmsrs, b->entries, (size_t)got * sizeof(b->entries[0]));
		v->nmsrs += (uint32_t)got;
		done += (uint32_t)got;
		if (done < n) {
			msb_debug("MSR 0x%x cannot be read; not saved", idx[done]);
			done++;
		}
	}
	free(b);
	return 0;
}

#define GET(fd, req, arg, what)                                             \
	do {                                                                \
		if (ioctl((fd), (req), (arg)) < 0)                          \
			return msb_err_sys(err, "vCPU %u: %s", id, (what)); \
	} while (0)

static int capture_vcpu(struct vm *vm, unsigned id, const uint32_t *idx, uint32_t nidx,
			struct snap_vcpu *v, struct msb_err *err)
{
	int fd = vm->vcpus[id].fd;
	GET(fd, KVM_GET_MP_STATE, &v->mp_state, "KVM_GET_MP_STATE");
	GET(fd, KVM_GET_REGS, &v->regs, "KVM_GET_REGS");
	GET(fd, KVM_GET_SREGS, &v->sregs, "KVM_GET_SREGS");
	GET(fd, KVM_GET_FPU, &v->fpu, "KVM_GET_FPU");
	struct kvm_xsave *x = calloc(1, sizeof(*x));
	if (!x)
		return msb_err_sys(err, "allocating");
	if (ioctl(fd, KVM_GET_XSAVE, x) == 0) {
		memcpy(v->xsave, x->region, sizeof(v->xsave));
		v->present |= SNAP_HAS_XSAVE;
	} else {
		msb_debug("vCPU %u: KVM_GET_XSAVE: %s (the FPU state alone is saved)", id,
			  strerror(errno));
	}
	free(x);
	if (ioctl(fd, KVM_GET_XCRS, &v->xcrs) == 0)
		v->present |= SNAP_HAS_XCRS;
	if (ioctl(fd, KVM_GET_DEBUGREGS, &v->debugregs) == 0)
		v->present |= SNAP_HAS_DEBUGREGS;
	GET(fd, KVM_GET_LAPIC, &v->lapic, "KVM_GET_LAPIC");
	GET(fd, KVM_GET_VCPU_EVENTS, &v->events, "KVM_GET_VCPU_EVENTS");
	return get_msrs(fd, idx, nidx, v, err);
}

int snap_capture(struct vm *vm, struct snapshot *s, struct msb_err *err)
{
	memset(s, 0, sizeof(*s));
	if (snap_alloc_vcpus(s, vm->ncpus, err) < 0)
		return -1;
	s->mem_bytes = vm->mem.ram_size;
	s->nregions = vm->mem.nregions;
	for (unsigned i = 0; i < vm->mem.nregions; i++)
		s->regions[i] =
			(struct snap_region){vm->mem.regions[i].gpa, vm->mem.regions[i].size};
	uint32_t nidx = 0;
	uint32_t *idx = msr_index_list(vm->kvm_fd, &nidx, err);
	if (!idx)
		goto fail;
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (capture_vcpu(vm, i, idx, nidx, &s->vcpus[i], err) < 0) {
			free(idx);
			goto fail;
		}
	free(idx);
	for (uint32_t c = 0; c < 3; c++) {
		s->irqchip[c].chip_id = c;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &s->irqchip[c]) < 0) {
			msb_err_sys(err, "KVM_GET_IRQCHIP %u", c);
			goto fail;
		}
	}
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &s->pit) < 0) {
		msb_err_sys(err, "KVM_GET_PIT2");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &s->clock) < 0) {
		msb_err_sys(err, "KVM_GET_CLOCK");
		goto fail;
	}
	pthread_mutex_lock(&vm->serial.lock);
	const struct serial *u = &vm->serial;
	s->serial = (struct snap_serial){u->ier, u->lcr, u->mcr, u->scr,
					 u->fcr, u->dll, u->dlm, u->thre_pending};
	pthread_mutex_unlock(&vm->serial.lock);
	pthread_mutex_lock(&vm->i8042.lock);
	const struct i8042 *k = &vm->i8042;
	s->i8042 = (struct snap_i8042){k->ctr, k->out, k->out_full, k->pending_cmd};
	pthread_mutex_unlock(&vm->i8042.lock);
	return 0;
fail:
	snap_free(s);
	return -1;
}

#define SET(fd, req, arg, what)                                                              \
	do {                                                                                 \
		if (ioctl((fd), (req), (arg)) < 0)                                           \
			return msb_err_set(err, MSB_EK_CORRUPT, errno,                       \
					   "vCPU %u: KVM refused the saved %s", id, (what)); \
	} while (0)

static int set_msrs(int fd, unsigned id, const struct snap_vcpu *v, struct msb_err *err)
{
	struct kvm_msrs *b = msr_buf();
	if (!b)
		return msb_err_sys(err, "allocating MSRs");
	uint32_t done = 0, refused = 0;
	while (done < v->nmsrs) {
		uint32_t k = v->nmsrs - done;
		b->nmsrs = k;
		memcpy(b->entries, v->msrs + done, k * sizeof(b->entries[0]));
		int got = ioctl(fd, KVM_SET_MSRS, b);
		if (got < 0) {
			free(b);
			return msb_err_sys(err, "vCPU %u: KVM_SET_MSRS", id);
		}
		done += (uint32_t)got;
		if (done < v->nmsrs) {
			msb_debug("vCPU %u: MSR 0x%x refused on restore (skipped)", id,
				  v->msrs[done].index);
			done++;
			refused++;
		}
	}
	free(b);
	if (refused)
		msb_debug("vCPU %u: %u of %u MSRs refused", id, refused, v->nmsrs);
	return 0;
}

static int apply_vcpu(struct vm *vm, unsigned id, const struct snap_vcpu *v, struct msb_err *err)
{
	int fd = vm->vcpus[id].fd;
	struct kvm_mp_state mp = v->mp_state;
	SET(fd, KVM_SET_MP_STATE, &mp, "MP state");
	struct kvm_regs regs = v->regs;
	SET(fd, KVM_SET_REGS, &regs, "registers");
	struct kvm_sregs sregs = v->sregs;
	SET(fd, KVM_SET_SREGS, &sregs, "special registers");
	struct kvm_fpu fpu = v->fpu;
	SET(fd, KVM_SET_FPU, &fpu, "FPU state");
	if (v->present & SNAP_HAS_XSAVE) {
		struct kvm_xsave *x = calloc(1, sizeof(*x));
		if (!x)
			return msb_err_sys(err, "allocating");
		memcpy(x->region, v->xsave, sizeof(v->xsave));
		int r = ioctl(fd, KVM_SET_XSAVE, x);
		int e = errno;
		free(x);
		if (r < 0)
			return msb_err_set(err, MSB_EK_CORRUPT, e,
					   "vCPU %u: KVM refused the saved XSAVE state", id);
	}
	if (v->present & SNAP_HAS_XCRS) {
		struct kvm_xcrs x = v->xcrs;
		SET(fd, KVM_SET_XCRS, &x, "XCRs");
	}
	if (v->present & SNAP_HAS_DEBUGREGS) {
		struct kvm_debugregs d = v->debugregs;
		SET(fd, KVM_SET_DEBUGREGS, &d, "debug registers");
	}
	struct kvm_lapic_state lapic = v->lapic;
	SET(fd, KVM_SET_LAPIC, &lapic, "local APIC");
	if (set_msrs(fd, id, v, err) < 0)
		return -1;
	struct kvm_vcpu_events ev = v->events;
	SET(fd, KVM_SET_VCPU_EVENTS, &ev, "pending events");
	/* Tells the guest's watchdogs the vCPU was stopped on purpose; fails
	 * (harmlessly) when the guest never enabled kvm-clock. */
	if (ioctl(fd, KVM_KVMCLOCK_CTRL, 0) < 0)
		msb_debug("vCPU %u: KVM_KVMCLOCK_CTRL: %s", id, strerror(errno));
	return 0;
}

int snap_apply(struct vm *vm, const struct snapshot *s, struct msb_err *err)
{
	if (s->ncpus != vm->ncpus || s->mem_bytes != vm->mem.ram_size ||
	    s->nregions != vm->mem.nregions)
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "the snapshot's shape (%u vCPUs, %llu bytes) does not match the "
				   "VM",
				   s->ncpus, (unsigned long long)s->mem_bytes);
	for (unsigned i = 0; i < s->nregions; i++)
		if (s->regions[i].gpa != vm->mem.regions[i].gpa ||
		    s->regions[i].size != vm->mem.regions[i].size)
			return msb_err_set(err, MSB_EK_CORRUPT, 0,
					   "the snapshot's memory region %u (0x%llx, %llu bytes) "
					   "differs from this msb-vmm's layout",
					   i, (unsigned long long)s->regions[i].gpa,
					   (unsigned long long)s->regions[i].size);
	struct kvm_pit_state2 pit = s->pit;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return msb_err_set(err, MSB_EK_CORRUPT, errno, "KVM refused the saved PIT state");
	/* The guest's clock goes on from where it stood (no jump over the pause). */
	struct kvm_clock_data clock = {.clock = s->clock.clock};
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return msb_err_set(err, MSB_EK_CORRUPT, errno, "KVM refused the saved clock");
	for (uint32_t c = 0; c < 3; c++) {
		struct kvm_irqchip chip = s->irqchip[c];
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return msb_err_set(err, MSB_EK_CORRUPT, errno,
					   "KVM refused the saved interrupt controller %u", c);
	}
	for (unsigned i = 0; i < s->ncpus; i++)
		if (apply_vcpu(vm, i, &s->vcpus[i], err) < 0)
			return -1;
	pthread_mutex_lock(&vm->serial.lock);
	struct serial *u = &vm->serial;
	u->ier = s->serial.ier;
	u->lcr = s->serial.lcr;
	u->mcr = s->serial.mcr;
	u->scr = s->serial.scr;
	u->fcr = s->serial.fcr;
	u->dll = s->serial.dll;
	u->dlm = s->serial.dlm;
	u->thre_pending = s->serial.thre_pending != 0;
	pthread_mutex_unlock(&vm->serial.lock);
	pthread_mutex_lock(&vm->i8042.lock);
	struct i8042 *k = &vm->i8042;
	k->ctr = s->i8042.ctr;
	k->out = s->i8042.out;
	k->out_full = s->i8042.out_full != 0;
	k->pending_cmd = s->i8042.pending_cmd;
	pthread_mutex_unlock(&vm->i8042.lock);
	return 0;
}
