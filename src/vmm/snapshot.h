/* VM snapshots: the state file's codec (pure, tested and fuzzed) and the
 * snapshot directory on disk.  Format and CLI: docs/snapshot.md.
 *
 * A snapshot is a directory with two files:
 *   state   versioned, CRC32C-checksummed sections (TLV): the VM's shape, every
 *           vCPU's KVM state, the interrupt controllers, PIT, clock, the 8250 and
 *           i8042, one blob per virtio device.  Small (tens of KiB).
 *   memory  guest RAM as raw bytes (sparse: all-zero pages are holes), then one
 *           4 KiB trailer page naming the snapshot it belongs to, so a state file
 *           never meets another snapshot's memory.
 * Both are written under temporary names and renamed, the state last.
 *
 * The codec stores KVM's structures as the host ABI lays them out (x86-64,
 * little-endian); the version number changes whenever that or the section set
 * changes, and a reader refuses every other version.
 */
#ifndef MSB_VMM_SNAPSHOT_H
#define MSB_VMM_SNAPSHOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/guest_mem.h"

#define SNAP_MAGIC	     "MSBSNAP\0"
#define SNAP_VERSION	     2u /* 2: vsock keeps its connections */
#define SNAP_HEADER_SIZE     32u
#define SNAP_STATE_MAX	     (16u << 20) /* bytes of a state file we accept */
#define SNAP_MAX_VCPUS	     64u
#define SNAP_MAX_DEVICES     11u
#define SNAP_MAX_MSRS	     1024u
#define SNAP_MAX_CMDLINE     4096u
#define SNAP_MAX_DEVICE_BLOB (1u << 20)
#define SNAP_ID_SIZE	     16u
#define SNAP_MEM_MAGIC	     "MSBSMEM\0"
#define SNAP_MEM_TRAILER     4096u

/* Sections a vCPU may lack (a host without the ioctl). */
#define SNAP_HAS_XSAVE	   (1u << 0)
#define SNAP_HAS_XCRS	   (1u << 1)
#define SNAP_HAS_DEBUGREGS (1u << 2)

struct snap_vcpu {
	unsigned present; /* SNAP_HAS_* */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	uint32_t xsave[1024]; /* struct kvm_xsave's region (its legacy 4 KiB form) */
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	uint32_t nmsrs;
	struct kvm_msr_entry *msrs; /* owned, nmsrs entries */
};

struct snap_region {
	uint64_t gpa, size;
};

struct snap_device {
	uint32_t id;   /* virtio device id (2 blk, 3 console, 4 rng, 19 vsock) */
	uint8_t *blob; /* owned: virtio_dev_save()'s state */
	size_t len;
};

/* The 8250's registers and the i8042's, as serial.h / i8042.h hold them. */
struct snap_serial {
	uint8_t ier, lcr, mcr, scr, fcr, dll, dlm, thre_pending;
};
struct snap_i8042 {
	uint8_t ctr, out, out_full, pending_cmd;
};

struct snapshot {
	uint8_t id[SNAP_ID_SIZE]; /* random, also in the memory file's trailer */
	uint32_t ncpus;
	uint64_t mem_bytes;
	uint32_t nregions;
	struct snap_region regions[GM_MAX_REGIONS];
	uint32_t ndevs;
	struct snap_device devs[SNAP_MAX_DEVICES];
	char *cmdline;		       /* owned, for information */
	struct snap_vcpu *vcpus;       /* owned, ncpus entries */
	struct kvm_irqchip irqchip[3]; /* PIC master, PIC slave, IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct snap_serial serial;
	struct snap_i8042 i8042;
};

/* CRC-32C (Castagnoli) of `len` bytes, continuing from `crc` (0 to start). */
uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len);

/* Allocate the vCPU array for `ncpus` (zeroed).  Returns -1 on ENOMEM. */
int snap_alloc_vcpus(struct snapshot *s, uint32_t ncpus, struct msb_err *err);

/* Free everything a snapshot owns and zero it; a zeroed one is fine. */
void snap_free(struct snapshot *s);

/* Encode `s` into a malloc'd buffer (*out, *len), which the caller frees. */
int snap_encode(const struct snapshot *s, uint8_t **out, size_t *len, struct msb_err *err);

/* Decode a state file's bytes into `s` (zeroed first; snap_free() it after
 * success; on failure nothing is left to free).  Refuses, with kind
 * MSB_EK_CORRUPT and a message saying what is wrong: a truncated or oversized
 * file, a wrong magic, another version, a checksum mismatch, a missing,
 * repeated, unknown or wrongly sized section, and values out of range. */
int snap_decode(const uint8_t *buf, size_t len, struct snapshot *s, struct msb_err *err);

/* Write `s` and guest RAM `mem` into directory `dir` (created if missing, mode
 * 0700): DIR/memory.tmp and DIR/state.tmp, synced, then renamed.  A fresh
 * random id is put into s->id first.  All-zero pages become holes. */
int snap_write_dir(const char *dir, struct snapshot *s, const struct guest_mem *mem,
		   struct msb_err *err);

/* Read and decode DIR/state and open DIR/memory, checking that the memory
 * file is complete and belongs to this state (trailer id).  On success `*mem_fd`
 * is the open memory file (the caller closes it).  Every failure is kind
 * MSB_EK_CORRUPT or MSB_EK_NOT_FOUND with the path in the message. */
int snap_read_dir(const char *dir, struct snapshot *s, int *mem_fd, struct msb_err *err);

struct vm;

/* Read the VM's state (shape, every vCPU, irqchips, PIT, clock, 8250, i8042)
 * into `s` (zeroed first; snap_free() it).  The vCPUs must be parked
 * (vm_pause()) or never started.  Devices are added by the caller. */
int snap_capture(struct vm *vm, struct snapshot *s, struct msb_err *err);

/* Load `s` into a VM made by vm_create() with the same shape and the
 * snapshot's memory, before vm_run(): PIT, clock, irqchips, then per vCPU
 * CPUID (set at creation), MP state, registers, XSAVE, XCRS, debug registers,
 * LAPIC, MSRs (a refused one is logged at debug level), events, and
 * KVM_KVMCLOCK_CTRL; then the 8250 and i8042.  Devices are the caller's. */
int snap_apply(struct vm *vm, const struct snapshot *s, struct msb_err *err);

#endif
