/* Tiny hand-written guests on the real /dev/kvm, started exactly as Linux is
 * (long mode on the boot page tables and GDT), checking msb-vmm's exits and
 * exit codes.  A few instructions each: guest kernel mode is slow on PVM. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/test.h"
#include "vmm/vm.h"

#define CODE_AT 0x100000

#define NEED_KVM()                                                          \
	do {                                                                \
		if (access("/dev/kvm", R_OK | W_OK) != 0)                   \
			TEST_SKIP("/dev/kvm is absent: cannot run guests"); \
	} while (0)

/* mov dx, port */
#define MOV_DX(p) 0x66, 0xba, (p)&0xff, (p) >> 8
#define OUT_DX_AL 0xee
#define MOV_AL(v) 0xb0, (v)
#define JMP_SELF  0xeb, 0xfe

struct run_result {
	int code;
	char msg[VM_STOP_MSG];
	char serial[256];
	double seconds;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Boot `code` on a fresh VM and run it to its end (or `deadline_ms`). */
static int run_guest(const uint8_t *code, size_t len, unsigned ncpus, unsigned deadline_ms,
		     struct run_result *r, struct msb_err *err)
{
	memset(r, 0, sizeof(*r));
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
		return msb_err_sys(err, "pipe");
	struct vm vm;
	struct vm_config cfg = {.ncpus = ncpus, .mem_bytes = 4 << 20, .serial_fd = pfd[1]};
	int rc = vm_create(&vm, &cfg, err);
	if (rc == 0)
		rc = vm_load_raw(&vm, code, len, CODE_AT, err);
	if (rc == 0) {
		double t0 = now_s();
		r->code = vm_run(&vm, -1, 0, deadline_ms);
		r->seconds = now_s() - t0;
		snprintf(r->msg, sizeof(r->msg), "%s", vm_stop_message(&vm));
	}
	vm_destroy(&vm);
	ssize_t n = read(pfd[0], r->serial, sizeof(r->serial) - 1);
	if (n > 0)
		r->serial[n] = '\0';
	close(pfd[0]);
	close(pfd[1]);
	return rc;
}

TEST(uart_bytes_then_orderly_power_off)
{
	NEED_KVM();
	const uint8_t code[] = {MOV_DX(0x3f8), MOV_AL('h'), OUT_DX_AL, MOV_AL('i'), OUT_DX_AL,
				MOV_DX(0x510), MOV_AL(0),   OUT_DX_AL, JMP_SELF};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 1, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_OK);
	CHECK_STR(r.serial, "hi");
	CHECK(strstr(r.msg, "shut down in order") != NULL);
}

TEST(rep_outsb_reaches_the_uart)
{
	NEED_KVM();
	/* lea rsi,[rip+msg]; mov ecx,5; mov dx,0x3f8; rep outsb; power 0; msg */
	/* clang-format off */
	const uint8_t code[] = {
		0x48, 0x8d, 0x35, 20, 0, 0, 0,	/* lea rsi, [rip + 20] (msg) */
		0xb9, 5, 0, 0, 0,		/* mov ecx, 5 */
		MOV_DX(0x3f8), 0xf3, 0x6e,	/* rep outsb */
		MOV_DX(0x510), MOV_AL(0), OUT_DX_AL, JMP_SELF,
		'h', 'e', 'l', 'l', 'o',
	};
	/* clang-format on */
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 1, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_OK);
	CHECK_STR(r.serial, "hello");
}

TEST(nonzero_power_status_is_a_guest_failure)
{
	NEED_KVM();
	const uint8_t code[] = {MOV_DX(0x510), MOV_AL(3), OUT_DX_AL, JMP_SELF};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 1, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_GUEST);
	CHECK(strstr(r.msg, "status 3") != NULL);
}

TEST(i8042_reset_is_a_crash_or_reset)
{
	NEED_KVM();
	/* out 0x64, al with al = 0xfe (what reboot=k does) */
	const uint8_t code[] = {MOV_AL(0xfe), 0xe6, 0x64, JMP_SELF};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 1, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_GUEST);
	CHECK(strstr(r.msg, "reset") != NULL);
}

TEST(triple_fault_is_reported)
{
	NEED_KVM();
	/* ud2 with an empty IDT: #UD -> #GP -> #DF -> shutdown */
	const uint8_t code[] = {0x0f, 0x0b};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 1, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_GUEST);
	CHECK(strstr(r.msg, "triple") != NULL || strstr(r.msg, "internal error") != NULL);
}

static uint64_t mmio_last_off, mmio_last_val;

static void test_dev(void *ctx, uint64_t offset, void *data, uint32_t len, bool is_write)
{
	if (is_write) {
		mmio_last_off = offset;
		mmio_last_val = 0;
		memcpy(&mmio_last_val, data, len);
	} else {
		memset(data, 0, len);
		*(uint8_t *)data = (uint8_t)(uintptr_t)ctx;
	}
}

TEST(mmio_window_reads_and_writes)
{
	NEED_KVM();
	/* mov edi,0xd0001000 (window 1); mov eax,0x12345678; mov [rdi+8],eax;
	 * mov eax,[rdi+4]; sub al,0x2a; out 0x510,al (0 only if the read saw 0x2a) */
	const uint8_t code[] = {0xbf, 0x00, 0x10, 0x00, 0xd0,	       0xb8,	  0x78,
				0x56, 0x34, 0x12, 0x89, 0x47,	       0x08,	  0x8b,
				0x47, 0x04, 0x2c, 0x2a, MOV_DX(0x510), OUT_DX_AL, JMP_SELF};
	NEED_KVM();
	struct msb_err err = {0};
	struct vm vm;
	struct vm_config cfg = {.ncpus = 1, .mem_bytes = 4 << 20, .serial_fd = -1};
	if (vm_create(&vm, &cfg, &err) < 0)
		TEST_FAIL("%s", err.msg);
	uint64_t base[2];
	unsigned gsi[2];
	int irqfd[2];
	int i0 = vm_mmio_reserve(&vm, &base[0], &gsi[0], &irqfd[0], &err);
	int i1 = vm_mmio_reserve(&vm, &base[1], &gsi[1], &irqfd[1], &err);
	int rc = i0 == 0 && i1 == 1 ? 0 : -1;
	if (rc == 0)
		rc = vm_mmio_plug(&vm, base[1], test_dev, (void *)(uintptr_t)0x2a, &err);
	/* A second device on the same window is refused. */
	int dup = vm_mmio_plug(&vm, base[1], test_dev, NULL, &err);
	if (rc == 0)
		rc = vm_load_raw(&vm, code, sizeof(code), CODE_AT, &err);
	int code_rc = rc == 0 ? vm_run(&vm, -1, 0, 10000) : -1;
	vm_destroy(&vm);
	CHECK_INT(rc, ==, 0);
	CHECK(base[0] == 0xd0000000ull && base[1] == 0xd0001000ull);
	CHECK(gsi[0] == 5 && gsi[1] == 6);
	CHECK(irqfd[0] >= 0 && irqfd[1] >= 0);
	CHECK_INT(dup, ==, -1);
	CHECK_INT(code_rc, ==, VM_EXIT_OK);
	CHECK_INT(mmio_last_off, ==, 8);
	CHECK(mmio_last_val == 0x12345678);
}

TEST(spinning_guest_is_stopped_at_the_deadline)
{
	NEED_KVM();
	const uint8_t code[] = {JMP_SELF};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 2, 300, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_FORCED);
	CHECK(r.seconds < 5.0);
	CHECK(r.seconds >= 0.29);
}

TEST(second_vcpu_waits_for_sipi_and_is_joined)
{
	NEED_KVM();
	/* vCPU 1 never gets a SIPI: it sleeps in KVM until kicked at the end. */
	const uint8_t code[] = {MOV_DX(0x510), MOV_AL(0), OUT_DX_AL, JMP_SELF};
	struct run_result r;
	struct msb_err err = {0};
	if (run_guest(code, sizeof(code), 2, 10000, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_OK);
	CHECK(r.seconds < 5.0);
}

TEST(each_vcpu_sees_its_apic_id)
{
	NEED_KVM();
	struct msb_err err = {0};
	struct vm vm;
	struct vm_config cfg = {.ncpus = 3, .mem_bytes = 4 << 20, .serial_fd = -1};
	if (vm_create(&vm, &cfg, &err) < 0)
		TEST_FAIL("%s", err.msg);
	unsigned seen[3] = {99, 99, 99};
	for (unsigned i = 0; i < 3; i++) {
		_Alignas(struct kvm_cpuid2) uint8_t
			buf[sizeof(struct kvm_cpuid2) + 256 * sizeof(struct kvm_cpuid_entry2)];
		struct kvm_cpuid2 *cp = (struct kvm_cpuid2 *)buf;
		memset(buf, 0, sizeof(buf));
		cp->nent = 256;
		if (ioctl(vm.vcpus[i].fd, KVM_GET_CPUID2, cp) < 0)
			continue;
		for (unsigned j = 0; j < cp->nent; j++)
			if (cp->entries[j].function == 1)
				seen[i] = cp->entries[j].ebx >> 24;
	}
	/* The MP table sits in the last KiB below 640K. */
	const uint8_t *fp = gm_ptr(&vm.mem, 0x9fc00, 0x400);
	int found = 0;
	for (unsigned off = 0; fp && off < 0x400; off += 16)
		found |= memcmp(fp + off, "_MP_", 4) == 0;
	vm_destroy(&vm);
	CHECK(seen[0] == 0 && seen[1] == 1 && seen[2] == 2);
	CHECK(found);
}

TEST(bad_configs_are_refused)
{
	NEED_KVM();
	struct msb_err err = {0};
	struct vm vm;
	struct vm_config cfg = {.ncpus = 0, .mem_bytes = 4 << 20, .serial_fd = -1};
	CHECK_INT(vm_create(&vm, &cfg, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	cfg.ncpus = 1;
	cfg.mem_bytes = 1 << 20;
	CHECK_INT(vm_create(&vm, &cfg, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
}

/* msb-init powers off with ioperm(0x510) + outb from user mode: the port is
 * opened in the TSS I/O bitmap, IOPL stays 0.  Run that at CPL3: the write
 * must reach msb-vmm (exit 0), and a port the bitmap keeps closed must fault
 * (#GP with no IDT: triple fault, exit 7). */
static int run_user_outb(uint16_t port, struct run_result *r, struct msb_err *err)
{
	const uint8_t code[] = {MOV_DX(port), MOV_AL(0), OUT_DX_AL, JMP_SELF};
	memset(r, 0, sizeof(*r));
	struct vm vm;
	struct vm_config cfg = {.ncpus = 1, .mem_bytes = 4 << 20, .serial_fd = -1};
	if (vm_create(&vm, &cfg, err) < 0)
		return -1;
	int rc = vm_load_raw(&vm, code, sizeof(code), CODE_AT, err);
	/* User-accessible mappings for the first 2 MiB (code and stack). */
	uint64_t *pml4 = gm_ptr(&vm.mem, 0x9000, 8), *pdpt = gm_ptr(&vm.mem, 0xa000, 8);
	uint64_t *pd = gm_ptr(&vm.mem, 0xb000, 8);
	*pml4 |= 4;
	*pdpt |= 4;
	*pd |= 4;
	/* TSS at 0x3000 with the I/O bitmap right after its 104 bytes: every
	 * port closed but 0x510. */
	const uint64_t tss = 0x3000;
	uint8_t *t = gm_ptr(&vm.mem, tss, 0x1000);
	memset(t, 0, 0x1000);
	uint16_t iomap = 104;
	memcpy(t + 102, &iomap, 2);
	memset(t + 104, 0xff, 0x2001);
	t[104 + 0x510 / 8] &= (uint8_t) ~(1u << (0x510 % 8));
	struct kvm_sregs s;
	if (rc == 0 && ioctl(vm.vcpus[0].fd, KVM_GET_SREGS, &s) < 0)
		rc = msb_err_sys(err, "KVM_GET_SREGS");
	if (rc == 0) {
		s.cs.dpl = 3;
		s.cs.selector = 0x1b;
		s.ss.dpl = s.ds.dpl = s.es.dpl = s.fs.dpl = s.gs.dpl = 3;
		s.ss.selector = s.ds.selector = s.es.selector = 0x23;
		s.fs.selector = s.gs.selector = 0x23;
		s.tr = (struct kvm_segment){.base = tss,
					    .limit = 104 + 0x2001 - 1,
					    .selector = 0x28,
					    .type = 11,
					    .present = 1};
		if (ioctl(vm.vcpus[0].fd, KVM_SET_SREGS, &s) < 0)
			rc = msb_err_sys(err, "KVM_SET_SREGS");
	}
	if (rc == 0) {
		r->code = vm_run(&vm, -1, 0, 10000);
		snprintf(r->msg, sizeof(r->msg), "%s", vm_stop_message(&vm));
	}
	vm_destroy(&vm);
	return rc;
}

TEST(user_mode_outb_through_the_io_bitmap)
{
	NEED_KVM();
	struct run_result r;
	struct msb_err err = {0};
	if (run_user_outb(0x510, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_OK);
	if (run_user_outb(0x3f8, &r, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(r.code, ==, VM_EXIT_GUEST);
}

TEST_MAIN(T(uart_bytes_then_orderly_power_off), T(rep_outsb_reaches_the_uart),
	  T(nonzero_power_status_is_a_guest_failure), T(i8042_reset_is_a_crash_or_reset),
	  T(triple_fault_is_reported), T(mmio_window_reads_and_writes),
	  T(spinning_guest_is_stopped_at_the_deadline), T(second_vcpu_waits_for_sipi_and_is_joined),
	  T(each_vcpu_sees_its_apic_id), T(bad_configs_are_refused),
	  T(user_mode_outb_through_the_io_bitmap))
