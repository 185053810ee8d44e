/* One KVM virtual machine: its memory, vCPU threads, buses and the reason it
 * stopped.  msb-vmm holds exactly one; tests build small ones of their own.
 *
 * Life cycle: vm_create() -> vm_load_linux() or vm_load_raw() ->
 * vm_mmio_reserve() + vm_mmio_plug() for each device -> vm_run() (returns when the VM stops, with
 * an exit code below) -> vm_destroy().
 *
 * Stopping: whoever first decides the VM is over (a vCPU seeing the power
 * port, a reset or a fatal exit; the main thread on a deadline) calls
 * vm_stop() with a code and a message; later calls are ignored, so the first
 * reason is the one reported.  vm_run() then kicks every vCPU out of KVM_RUN
 * and joins them.
 */
#ifndef MSB_VMM_VM_H
#define MSB_VMM_VM_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "vmm/bus.h"
#include "vmm/guest_mem.h"
#include "vmm/i8042.h"
#include "vmm/serial.h"

/* msb-vmm's exit statuses (also in `msb-vmm --help` and docs/vmm.md). */
enum vm_exit_code {
	VM_EXIT_OK = 0,	      /* the guest shut down in order (status 0 on port 0x510) */
	VM_EXIT_HOST = 1,     /* msb-vmm or the host failed (/dev/kvm, files, ...) */
	VM_EXIT_USAGE = 2,    /* bad options */
	VM_EXIT_SNAPSHOT = 3, /* the snapshot cannot be restored (missing, truncated, corrupt,
				 another version, other devices): rebuild it */
	VM_EXIT_FORCED = 5,   /* stopped from outside: the guest did not shut down within
				 --shutdown-timeout after SIGTERM/SIGINT, or a deadline */
	VM_EXIT_GUEST = 7,    /* the guest crashed, reset without a status, hit an
				 instruction KVM cannot run, or reported a non-zero status */
};

#define VM_POWER_PORT 0x510
#define VM_MAX_VCPUS  64
#define VM_MMIO_BASE  0xd0000000ull
#define VM_MMIO_SIZE  0x1000ull
#define VM_MMIO_GSI0  5
#define VM_MMIO_MAX   11 /* GSIs 5..15: the ISA interrupts the MP table routes */
#define VM_SERIAL_GSI 4
#define VM_STOP_MSG   256

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	uint64_t exits_io, exits_mmio, exits_other; /* for MSB_LOG=info */
};

struct vm_config {
	unsigned ncpus;
	uint64_t mem_bytes;
	int serial_fd; /* 8250 output (borrowed); -1 answers the UART and drops its bytes */
	bool restore;  /* guest RAM is `mem_fd` mapped private (a snapshot's memory); the
			  MP table is then not written (the file has it) */
	int mem_fd;
};

/* Something else the main loop waits for (msb-vmm's control socket).  fds()
 * fills up to `max` pollfds; ready() gets them back after each poll. */
struct vm_hook {
	unsigned (*fds)(void *ctx, struct pollfd *p, unsigned max);
	void (*ready)(void *ctx, const struct pollfd *p, unsigned n);
	void *ctx;
};

struct vm {
	int kvm_fd, vm_fd;
	struct guest_mem mem;
	unsigned ncpus;
	struct vcpu *vcpus;
	size_t run_size;
	struct bus pio, mmio;
	struct serial serial;
	struct i8042 i8042;
	unsigned nmmio; /* MMIO windows handed out by vm_mmio_reserve() */
	int irqfds[VM_MMIO_MAX];
	int done_fd;	    /* eventfd: written by vm_stop() */
	atomic_int stopped; /* 0 while running */
	pthread_mutex_t stop_lock;
	int stop_code;
	char stop_msg[VM_STOP_MSG];
	/* Asks the guest to shut down in order (on SIGTERM/SIGINT); NULL when
	 * there is no way to ask.  Returns -1 when the request could not be sent. */
	int (*request_shutdown)(void *ctx);
	void *request_ctx;
	struct vm_hook hook; /* optional */
	/* Pausing (vm_pause): vCPU threads park in `pause_cond` while pause_req. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	atomic_bool pause_req;
	unsigned parked, active; /* threads parked / threads in their run loop */
	bool paused;		 /* main thread's view */
	bool avx_assist; /* switch AVX state for the guest kernel (avx.h); set before vm_run */
	bool created;
};

/* Open /dev/kvm and build the machine: in-kernel IOAPIC/PIC/LAPIC and PIT,
 * guest RAM in memory slots, the MP table, `ncpus` vCPUs (CPUID, MSRs,
 * LAPIC), and the PIO bus (UART at 0x3f8, i8042, power port 0x510).
 * On failure everything built so far is released. */
int vm_create(struct vm *vm, const struct vm_config *cfg, struct msb_err *err);

/* Load an ELF vmlinux (and an initrd, or NULL), write the boot structures for
 * `cmdline`, and point the boot vCPU at the kernel's 64-bit entry. */
int vm_load_linux(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline,
		  struct msb_err *err);

/* Copy `len` bytes of 64-bit code to guest physical `gpa` and start the boot
 * vCPU there in the same long-mode state Linux gets (page tables, GDT). */
int vm_load_raw(struct vm *vm, const void *code, size_t len, uint64_t gpa, struct msb_err *err);

/* Reserve the next virtio-mmio window and its GSI: an eventfd registered
 * with KVM_IRQFD for the GSI (owned by the vm, closed by vm_destroy).
 * Returns the window's index (0, 1, ...). */
int vm_mmio_reserve(struct vm *vm, uint64_t *base, unsigned *gsi, int *irqfd, struct msb_err *err);

/* Route guest accesses to the 4 KiB window at `base` to `fn` (before vm_run). */
int vm_mmio_plug(struct vm *vm, uint64_t base, bus_fn fn, void *ctx, struct msb_err *err);

/* Record why the VM ends (the first caller wins) and wake vm_run(). */
__attribute__((format(printf, 3, 4))) void vm_stop(struct vm *vm, int code, const char *fmt, ...);

/* Run the vCPUs until the VM stops; returns its exit code (enum vm_exit_code).
 * `sigfd`: a signalfd for SIGTERM/SIGINT or -1.  On the first signal the guest
 * is asked to shut down (request_shutdown) and gets `shutdown_timeout_ms`;
 * on a second signal, a timeout, or nothing to ask with, the VM is stopped
 * with VM_EXIT_FORCED.  `deadline_ms` > 0 stops it likewise after that long. */
int vm_run(struct vm *vm, int sigfd, unsigned shutdown_timeout_ms, unsigned deadline_ms);

/* Park every vCPU thread outside KVM_RUN, with any exit in progress completed
 * (KVM finishes a pending PIO/MMIO read on the KVM_RUN that returns EINTR), so
 * the vCPU state can be read or written from this thread.  Returns -1 when the
 * VM stopped instead.  Main thread only, while vm_run() runs (from a hook). */
int vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);

/* Why the VM stopped ("" while running). */
const char *vm_stop_message(const struct vm *vm);

void vm_destroy(struct vm *vm);

#endif
