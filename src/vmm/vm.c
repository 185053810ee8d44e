#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/boot.h"
#include "vmm/cpu.h"
#include "vmm/mptable.h"

/* Addresses KVM needs for its own use on Intel hosts, inside the MMIO gap
 * and away from the devices' windows. */
#define KVM_TSS_ADDR	      0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

static void serial_irq(void *ctx)
{
	struct vm *vm = ctx;
	struct kvm_irq_level l = {.irq = VM_SERIAL_GSI, .level = 1};
	/* An edge: the ISA line as the MP table declares it. */
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) == 0) {
		l.level = 0;
		ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
	}
}

static void i8042_reset(void *ctx)
{
	vm_stop(ctx, VM_EXIT_GUEST,
		"the guest reset the machine (i8042 reset without a shutdown status: "
		"a reboot, or a kernel panic with panic=-1)");
}

static void power_pio(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	uint8_t status = *(uint8_t *)data;
	if (status == 0)
		vm_stop(ctx, VM_EXIT_OK, "the guest shut down in order");
	else
		vm_stop(ctx, VM_EXIT_GUEST, "the guest reported failure status %u on port 0x%x",
			status, VM_POWER_PORT);
}

void vm_stop(struct vm *vm, int code, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->stop_lock);
	if (!atomic_load(&vm->stopped)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(vm->stop_msg, sizeof(vm->stop_msg), fmt, ap);
		va_end(ap);
		vm->stop_code = code;
		atomic_store(&vm->stopped, 1);
		uint64_t one = 1;
		if (write(vm->done_fd, &one, sizeof(one)) < 0)
			msb_debug("waking the main thread: %s", strerror(errno));
	}
	pthread_mutex_unlock(&vm->stop_lock);
}

const char *vm_stop_message(const struct vm *vm)
{
	return vm->stop_msg;
}

static int open_kvm(struct msb_err *err)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return msb_err_sys(err, "opening /dev/kvm (is KVM available and may this user use "
					"it? it needs read/write access)");
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		close(fd);
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "/dev/kvm speaks API %d, not %d", v,
				   KVM_API_VERSION);
	}
	static const struct {
		int cap;
		const char *name;
	} need[] = {{KVM_CAP_IRQCHIP, "IRQCHIP"},
		    {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
		    {KVM_CAP_IRQFD, "IRQFD"},
		    {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
		    {KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"},
		    {KVM_CAP_EXT_CPUID, "EXT_CPUID"}};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
			close(fd);
			return msb_err_set(err, MSB_EK_SYSTEM, 0, "this KVM lacks KVM_CAP_%s",
					   need[i].name);
		}
	}
	return fd;
}

static int create_vcpus(struct vm *vm, struct msb_err *err)
{
	struct kvm_cpuid2 *cpuid = cpu_supported_cpuid(vm->kvm_fd, err);
	if (!cpuid)
		return -1;
	int rc = 0;
	for (unsigned i = 0; i < vm->ncpus && rc == 0; i++) {
		struct vcpu *c = &vm->vcpus[i];
		c->vm = vm;
		c->id = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (c->fd < 0) {
			rc = msb_err_sys(err, "creating vCPU %u", i);
			break;
		}
		c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (c->run == MAP_FAILED) {
			c->run = NULL;
			rc = msb_err_sys(err, "mapping vCPU %u's run area", i);
			break;
		}
		if (cpu_setup(c->fd, cpuid, i, vm->ncpus, err) < 0)
			rc = msb_err_wrap(err, "setting up vCPU %u", i);
	}
	free(cpuid);
	return rc;
}

static int add_memory(struct vm *vm, struct msb_err *err)
{
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct gm_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region slot = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
			return msb_err_sys(err, "giving KVM guest memory slot %u", i);
	}
	return 0;
}

static int add_legacy_devices(struct vm *vm, struct msb_err *err)
{
	if (bus_add(&vm->pio, SERIAL_COM1_BASE, SERIAL_NPORTS, serial_pio, &vm->serial, err) < 0 ||
	    bus_add(&vm->pio, I8042_DATA_PORT, 1, i8042_data_pio, &vm->i8042, err) < 0 ||
	    bus_add(&vm->pio, I8042_COMMAND_PORT, 1, i8042_command_pio, &vm->i8042, err) < 0 ||
	    bus_add(&vm->pio, VM_POWER_PORT, 1, power_pio, vm, err) < 0)
		return -1;
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, struct msb_err *err)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->done_fd = -1;
	for (unsigned i = 0; i < VM_MMIO_MAX; i++)
		vm->irqfds[i] = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio);
	bus_init(&vm->mmio);
	serial_init(&vm->serial, cfg->serial_fd, serial_irq, vm);
	i8042_init(&vm->i8042, i8042_reset, vm);
	vm->created = true;

	if (cfg->ncpus == 0 || cfg->ncpus > VM_MAX_VCPUS) {
		msb_err_set(err, MSB_EK_USAGE, 0, "a VM has 1 to %d vCPUs (asked for %u)",
			    VM_MAX_VCPUS, cfg->ncpus);
		goto fail;
	}
	if (cfg->mem_bytes < BOOT_MIN_RAM) {
		msb_err_set(err, MSB_EK_USAGE, 0, "a VM needs at least %llu MiB of memory",
			    BOOT_MIN_RAM >> 20);
		goto fail;
	}
	vm->ncpus = cfg->ncpus;
	vm->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->done_fd < 0) {
		msb_err_sys(err, "eventfd");
		goto fail;
	}
	vm->kvm_fd = open_kvm(err);
	if (vm->kvm_fd < 0)
		goto fail;
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max > 0 && cfg->ncpus > (unsigned)max) {
		msb_err_set(err, MSB_EK_USAGE, 0, "this KVM runs at most %d vCPUs per VM", max);
		goto fail;
	}
	int rs = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rs < (int)sizeof(struct kvm_run)) {
		msb_err_sys(err, "KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	vm->run_size = (size_t)rs;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		msb_err_sys(err, "creating a KVM VM");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		msb_err_sys(err, "KVM_SET_TSS_ADDR");
		goto fail;
	}
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		msb_debug("KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		msb_err_sys(err, "creating the in-kernel interrupt controllers");
		goto fail;
	}
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		msb_err_sys(err, "creating the in-kernel PIT");
		goto fail;
	}
	if (cfg->restore) {
		if (gm_map_file(&vm->mem, cfg->mem_fd, cfg->mem_bytes, err) < 0 ||
		    add_memory(vm, err) < 0)
			goto fail;
	} else if (gm_map(&vm->mem, cfg->mem_bytes, err) < 0 || add_memory(vm, err) < 0) {
		goto fail;
	}
	size_t mpsz = mptable_size(vm->ncpus);
	uint64_t mpgpa = (BOOT_BASE_END - mpsz) & ~15ull;
	void *mpt = gm_ptr(&vm->mem, mpgpa, mpsz);
	if (!cfg->restore && (mpgpa < BOOT_EBDA || !mpt ||
			      mptable_build(mpt, mpsz, (uint32_t)mpgpa, vm->ncpus) == 0)) {
		msb_err_set(err, MSB_EK_INTERNAL, 0, "no room for the MP table");
		goto fail;
	}
	if (add_legacy_devices(vm, err) < 0)
		goto fail;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		msb_err_sys(err, "allocating vCPUs");
		goto fail;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	if (create_vcpus(vm, err) < 0)
		goto fail;
	return 0;
fail:
	vm_destroy(vm);
	return -1;
}

int vm_load_linux(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline,
		  struct msb_err *err)
{
	struct boot_elf elf;
	if (boot_load_elf(&vm->mem, kernel, &elf, err) < 0)
		return -1;
	uint64_t initrd_gpa = 0, initrd_size = 0;
	if (initrd &&
	    boot_load_initrd(&vm->mem, initrd, elf.end, &initrd_gpa, &initrd_size, err) < 0)
		return -1;
	if (boot_setup_linux(&vm->mem, cmdline, initrd_gpa, initrd_size, err) < 0)
		return -1;
	msb_info("kernel entry 0x%llx, end 0x%llx; initrd at 0x%llx (%llu bytes)",
		 (unsigned long long)elf.entry, (unsigned long long)elf.end,
		 (unsigned long long)initrd_gpa, (unsigned long long)initrd_size);
	return cpu_set_boot_regs(vm->vcpus[0].fd, elf.entry, BOOT_ZERO_PAGE, err);
}

int vm_load_raw(struct vm *vm, const void *code, size_t len, uint64_t gpa, struct msb_err *err)
{
	if (gm_write(&vm->mem, gpa, code, len) < 0)
		return msb_err_set(err, MSB_EK_USAGE, 0, "code does not fit in guest RAM");
	if (boot_page_tables_write(&vm->mem) < 0 || boot_gdt_write(&vm->mem) < 0)
		return msb_err_set(err, MSB_EK_INTERNAL, 0, "no guest RAM for the page tables");
	return cpu_set_boot_regs(vm->vcpus[0].fd, gpa, BOOT_ZERO_PAGE, err);
}

int vm_mmio_reserve(struct vm *vm, uint64_t *base, unsigned *gsi, int *irqfd, struct msb_err *err)
{
	if (vm->nmmio == VM_MMIO_MAX)
		return msb_err_set(err, MSB_EK_USAGE, 0, "a VM has at most %d devices",
				   VM_MMIO_MAX);
	unsigned i = vm->nmmio;
	unsigned g = VM_MMIO_GSI0 + i;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return msb_err_sys(err, "eventfd for device %u", i);
	struct kvm_irqfd irq = {.fd = (uint32_t)fd, .gsi = g};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irq) < 0) {
		msb_err_sys(err, "KVM_IRQFD for GSI %u", g);
		close(fd);
		return -1;
	}
	vm->irqfds[i] = fd;
	vm->nmmio++;
	*base = VM_MMIO_BASE + i * VM_MMIO_SIZE;
	*gsi = g;
	*irqfd = fd;
	return (int)i;
}

int vm_mmio_plug(struct vm *vm, uint64_t base, bus_fn fn, void *ctx, struct msb_err *err)
{
	return bus_add(&vm->mmio, base, VM_MMIO_SIZE, fn, ctx, err);
}

void vm_destroy(struct vm *vm)
{
	if (!vm->created)
		return;
	if (vm->vcpus) {
		for (unsigned i = 0; i < vm->ncpus; i++) {
			if (vm->vcpus[i].run)
				munmap(vm->vcpus[i].run, vm->run_size);
			if (vm->vcpus[i].fd >= 0)
				close(vm->vcpus[i].fd);
		}
		free(vm->vcpus);
	}
	for (unsigned i = 0; i < VM_MMIO_MAX; i++)
		if (vm->irqfds[i] >= 0)
			close(vm->irqfds[i]);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->done_fd >= 0)
		close(vm->done_fd);
	gm_unmap(&vm->mem);
	serial_destroy(&vm->serial);
	i8042_destroy(&vm->i8042);
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	vm->created = false;
}
