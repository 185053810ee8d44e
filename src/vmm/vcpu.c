/* vCPU threads, their exits, and vm_run(): the VM's main loop. */
#include <errno.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vmm/cpu.h"
#include "vmm/avx.h"
#include "vmm/vm.h"

/* Small stacks: the exit handlers need little, and msb-vmm's own memory is
 * part of every sandbox's cost. */
#define VCPU_STACK (256u * 1024)

/* Kicks a vCPU thread out of KVM_RUN (the handler does nothing; the EINTR
 * does the work). */
#define KICK_SIGNAL (SIGRTMIN + 1)

/* pollfds a vm_hook may add to the main loop. */
#define VM_HOOK_FDS 4

static void kick_handler(int sig)
{
	(void)sig;
}

static void handle_io(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	uint32_t size = run->io.size, count = run->io.count;
	uint64_t off = run->io.data_offset;
	/* KVM fills these; still, never index outside the shared page. */
	if (size == 0 || size > 8 || off > c->vm->run_size ||
	    (uint64_t)size * count > c->vm->run_size - off)
		return;
	uint8_t *p = (uint8_t *)run + off;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	if (c->vm->avx_assist && is_write && size == 4 && count == 1 &&
	    (run->io.port == AVX_SAVE_PORT || run->io.port == AVX_LOAD_PORT)) {
		uint32_t v;
		memcpy(&v, p, sizeof(v));
		avx_port_write(c, run->io.port, v);
		return;
	}
	for (uint32_t i = 0; i < count; i++, p += size)
		bus_access(&c->vm->pio, run->io.port, p, size, is_write);
}

static void handle_mmio(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	uint32_t len = run->mmio.len;
	if (len == 0 || len > sizeof(run->mmio.data))
		return;
	if (!bus_access(&c->vm->mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write))
		msb_debug("vCPU %u: MMIO %s at 0x%llx (%u bytes): no device", c->id,
			  run->mmio.is_write ? "write" : "read",
			  (unsigned long long)run->mmio.phys_addr, len);
}

/* A fatal exit: print what we know and stop the VM. */
static void fatal(struct vcpu *c, const char *what)
{
	char why[160];
	struct kvm_run *run = c->run;
	if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
		int n = snprintf(why, sizeof(why), "%s (suberror %u, data:", what,
				 run->internal.suberror);
		for (uint32_t i = 0; i < run->internal.ndata && i < 4 && n < (int)sizeof(why); i++)
			n += snprintf(why + n, sizeof(why) - (size_t)n, " %llx",
				      (unsigned long long)run->internal.data[i]);
		if (n < (int)sizeof(why))
			snprintf(why + n, sizeof(why) - (size_t)n, ")");
	} else if (run->exit_reason == KVM_EXIT_FAIL_ENTRY) {
		snprintf(why, sizeof(why), "%s (hardware reason 0x%llx)", what,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
	} else {
		snprintf(why, sizeof(why), "%s", what);
	}
	cpu_dump(c->fd, &c->vm->mem, c->id, why, STDERR_FILENO);
	vm_stop(c->vm, VM_EXIT_GUEST, "vCPU %u: %s", c->id, why);
}

/* Returns false when this vCPU is done. */
static bool handle_exit(struct vcpu *c)
{
	struct kvm_run *run = c->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		c->exits_io++;
		handle_io(c);
		return true;
	case KVM_EXIT_MMIO:
		c->exits_mmio++;
		handle_mmio(c);
		return true;
	case KVM_EXIT_INTR:
		c->exits_other++;
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC, which we always have. */
		vm_stop(c->vm, VM_EXIT_GUEST, "vCPU %u halted for good", c->id);
		return false;
	case KVM_EXIT_SHUTDOWN:
		fatal(c, "the guest triple-faulted (a crash, or a reset by triple fault)");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		fatal(c, "KVM could not run a guest instruction (internal error)");
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		fatal(c, "KVM could not enter the guest");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_stop(c->vm, VM_EXIT_GUEST, "vCPU %u: the guest asked for a system event %u",
			c->id, run->system_event.type);
		return false;
	default: {
		char what[64];
		snprintf(what, sizeof(what), "unexpected KVM exit %u", run->exit_reason);
		fatal(c, what);
		return false;
	}
	}
}

/* Wait here while a pause is asked for.  Reached only from a KVM_RUN that
 * returned EINTR, i.e. after KVM completed the exit handled before it. */
static void park(struct vcpu *c)
{
	struct vm *vm = c->vm;
	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopped))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->pause_lock);
	/* Before the loop looks at `stopped` again: a stop after this point
	 * sets immediate_exit anew. */
	c->run->immediate_exit = 0;
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *c = arg;
	struct vm *vm = c->vm;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!atomic_load(&vm->stopped)) {
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (atomic_load(&vm->pause_req))
					park(c);
				continue;
			}
			vm_stop(vm, VM_EXIT_HOST, "vCPU %u: KVM_RUN failed: %s", c->id,
				strerror(errno));
			break;
		}
		if (!handle_exit(c))
			break;
	}
	pthread_mutex_lock(&vm->pause_lock);
	vm->active--;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}

int vm_pause(struct vm *vm)
{
	if (vm->paused)
		return 0;
	atomic_store(&vm->pause_req, true);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		/* As in stop_vcpus(): immediate_exit first, so a kick that lands
		 * outside KVM_RUN is not lost. */
		c->run->immediate_exit = 1;
		pthread_kill(c->thread, KICK_SIGNAL);
	}
	pthread_mutex_lock(&vm->pause_lock);
	while (vm->parked < vm->active && !atomic_load(&vm->stopped))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	pthread_mutex_unlock(&vm->pause_lock);
	if (atomic_load(&vm->stopped)) {
		vm_resume(vm);
		return -1;
	}
	vm->paused = true;
	return 0;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_req, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	vm->paused = false;
}

/* A SIGTERM/SIGINT arrived.  Returns the new deadline (0: none). */
static uint64_t on_signal(struct vm *vm, int sigfd, bool *asked, unsigned timeout_ms)
{
	struct signalfd_siginfo si;
	if (read(sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (*asked) {
		vm_stop(vm, VM_EXIT_FORCED, "stopped by a second signal %u", si.ssi_signo);
		return 0;
	}
	*asked = true;
	if (!vm->request_shutdown) {
		vm_stop(vm, VM_EXIT_FORCED,
			"stopped by signal %u: no vsock device to ask the guest to shut down",
			si.ssi_signo);
		return 0;
	}
	if (vm->request_shutdown(vm->request_ctx) < 0) {
		vm_stop(vm, VM_EXIT_FORCED,
			"stopped by signal %u: could not ask the guest to shut down", si.ssi_signo);
		return 0;
	}
	msb_info("signal %u: asked the guest to shut down; waiting up to %u ms", si.ssi_signo,
		 timeout_ms);
	return msb_now_ms() + timeout_ms;
}

static int start_vcpus(struct vm *vm)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must see EINTR */
	sigaction(KICK_SIGNAL, &sa, NULL);
	/* Threads start with the kick blocked and unblock it themselves, so it
	 * never lands on the main thread. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VCPU_STACK);
	int rc = 0;
	vm->active = vm->ncpus;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		int e = pthread_create(&c->thread, &attr, vcpu_thread, c);
		if (e != 0) {
			vm_stop(vm, VM_EXIT_HOST, "starting vCPU %u: %s", i, strerror(e));
			pthread_mutex_lock(&vm->pause_lock);
			vm->active -= vm->ncpus - i;
			pthread_mutex_unlock(&vm->pause_lock);
			rc = -1;
			break;
		}
		c->started = true;
	}
	pthread_attr_destroy(&attr);
	return rc;
}

static void stop_vcpus(struct vm *vm)
{
	/* Parked threads wait for `stopped`. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		/* immediate_exit first: a kick that lands before KVM_RUN is not lost. */
		c->run->immediate_exit = 1;
		pthread_kill(c->thread, KICK_SIGNAL);
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *c = &vm->vcpus[i];
		if (!c->started)
			continue;
		pthread_join(c->thread, NULL);
		c->started = false;
		msb_info("vCPU %u: %llu PIO, %llu MMIO, %llu other exits", i,
			 (unsigned long long)c->exits_io, (unsigned long long)c->exits_mmio,
			 (unsigned long long)c->exits_other);
	}
}

int vm_run(struct vm *vm, int sigfd, unsigned shutdown_timeout_ms, unsigned deadline_ms)
{
	uint64_t hard_deadline = deadline_ms ? msb_now_ms() + deadline_ms : 0;
	uint64_t shutdown_deadline = 0;
	bool asked = false;
	start_vcpus(vm);
	while (!atomic_load(&vm->stopped)) {
		uint64_t t = msb_now_ms();
		uint64_t next = hard_deadline;
		if (shutdown_deadline && (!next || shutdown_deadline < next))
			next = shutdown_deadline;
		int timeout = -1;
		if (next)
			timeout = next > t ? (int)(next - t) : 0;
		struct pollfd p[2 + VM_HOOK_FDS] = {{.fd = vm->done_fd, .events = POLLIN},
						    {.fd = sigfd, .events = POLLIN}};
		unsigned nhook = vm->hook.fds ? vm->hook.fds(vm->hook.ctx, p + 2, VM_HOOK_FDS) : 0;
		int n = poll(p, 2 + nhook, timeout);
		if (n < 0 && errno != EINTR) {
			vm_stop(vm, VM_EXIT_HOST, "poll: %s", strerror(errno));
			break;
		}
		if (n > 0 && sigfd >= 0 && (p[1].revents & POLLIN)) {
			if (vm->paused) {
				/* Nobody runs to shut the guest down in order. */
				struct signalfd_siginfo si;
				if (read(sigfd, &si, sizeof(si)) == sizeof(si))
					vm_stop(vm, VM_EXIT_FORCED,
						"stopped by signal %u while paused", si.ssi_signo);
			} else {
				uint64_t d = on_signal(vm, sigfd, &asked, shutdown_timeout_ms);
				if (d)
					shutdown_deadline = d;
			}
		}
		if (n > 0 && nhook && !atomic_load(&vm->stopped))
			vm->hook.ready(vm->hook.ctx, p + 2, nhook);
		t = msb_now_ms();
		if (shutdown_deadline && t >= shutdown_deadline)
			vm_stop(vm, VM_EXIT_FORCED,
				"the guest did not shut down within %u ms of the request; stopped "
				"it",
				shutdown_timeout_ms);
		if (hard_deadline && t >= hard_deadline)
			vm_stop(vm, VM_EXIT_FORCED,
				"the VM ran past its %u ms deadline; stopped it", deadline_ms);
	}
	stop_vcpus(vm);
	/* Where a guest that had to be stopped was: how hangs get diagnosed. */
	if (vm->stop_code == VM_EXIT_FORCED)
		for (unsigned i = 0; i < vm->ncpus; i++)
			cpu_dump(vm->vcpus[i].fd, &vm->mem, i, "state when stopped", STDERR_FILENO);
	return vm->stop_code;
}
