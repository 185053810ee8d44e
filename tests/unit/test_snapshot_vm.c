/* Snapshots on the real /dev/kvm, in one process: a counting guest paused,
 * captured, written, read back and applied to a second VM over the snapshot's
 * memory file, which goes on counting from where the first stood. */
#include <linux/kvm.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/test.h"
#include "vmm/snapshot.h"
#include "vmm/vm.h"

#define CODE_AT	    0x100000
#define COUNTER_GPA 0x3000

/* xor eax,eax; loop: inc rax; mov [0x3000], rax; jmp loop */
static const uint8_t count_code[] = {0x31, 0xc0, 0x48, 0xff, 0xc0, 0x48, 0x89, 0x04,
				     0x25, 0x00, 0x30, 0x00, 0x00, 0xeb, 0xf3};

struct runner {
	struct vm *vm;
	pthread_t t;
	int code;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;
	r->code = vm_run(r->vm, -1, 0, 20000);
	return NULL;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static uint64_t counter(struct vm *vm)
{
	uint64_t v = 0;
	gm_read(&vm->mem, COUNTER_GPA, &v, sizeof(v));
	return v;
}

TEST(capture_write_read_apply_goes_on_counting)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		TEST_SKIP("/dev/kvm is absent: cannot run guests");
	struct msb_err err = {0};
	struct vm a;
	struct vm_config cfg = {.ncpus = 2, .mem_bytes = 4 << 20, .serial_fd = -1};
	if (vm_create(&a, &cfg, &err) < 0 ||
	    vm_load_raw(&a, count_code, sizeof(count_code), CODE_AT, &err) < 0)
		TEST_FAIL("%s", err.msg);
	struct runner ra = {.vm = &a};
	pthread_create(&ra.t, NULL, run_thread, &ra);
	sleep_ms(100);
	CHECK_INT(vm_pause(&a), ==, 0);
	uint64_t c1 = counter(&a);
	sleep_ms(30);
	CHECK_INT(counter(&a), ==, c1); /* paused means paused */
	CHECK(c1 > 0);
	struct snapshot s;
	if (snap_capture(&a, &s, &err) < 0)
		TEST_FAIL("%s", err.msg);
	CHECK_INT(s.ncpus, ==, 2);
	/* Between its inc and its store, rax is one ahead of memory. */
	CHECK(s.vcpus[0].regs.rax == c1 || s.vcpus[0].regs.rax == c1 + 1);
	CHECK_INT(s.vcpus[1].mp_state.mp_state, ==, KVM_MP_STATE_UNINITIALIZED);
	CHECK(s.vcpus[0].nmsrs > 5);
	char dir[] = "/tmp/msb-snapvm-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	if (snap_write_dir(dir, &s, &a.mem, &err) < 0)
		TEST_FAIL("%s", err.msg);
	snap_free(&s);
	vm_resume(&a);
	sleep_ms(30);
	vm_stop(&a, VM_EXIT_OK, "test over");
	pthread_join(ra.t, NULL);
	CHECK_INT(ra.code, ==, VM_EXIT_OK);
	CHECK(counter(&a) > c1); /* resumed */
	vm_destroy(&a);

	int fd = -1;
	if (snap_read_dir(dir, &s, &fd, &err) < 0)
		TEST_FAIL("%s", err.msg);
	struct vm b;
	struct vm_config rcfg = {.ncpus = s.ncpus,
				 .mem_bytes = s.mem_bytes,
				 .serial_fd = -1,
				 .restore = true,
				 .mem_fd = fd};
	if (vm_create(&b, &rcfg, &err) < 0)
		TEST_FAIL("%s", err.msg);
	close(fd);
	CHECK_INT(counter(&b), ==, c1);
	if (snap_apply(&b, &s, &err) < 0)
		TEST_FAIL("%s", err.msg);
	snap_free(&s);
	struct runner rb = {.vm = &b};
	pthread_create(&rb.t, NULL, run_thread, &rb);
	sleep_ms(100);
	CHECK_INT(vm_pause(&b), ==, 0);
	struct kvm_regs regs;
	CHECK_INT(ioctl(b.vcpus[0].fd, KVM_GET_REGS, &regs), ==, 0);
	CHECK(regs.rax > c1); /* went on from the saved count, not from 0 */
	CHECK(regs.rip >= CODE_AT && regs.rip < CODE_AT + sizeof(count_code));
	vm_stop(&b, VM_EXIT_OK, "test over");
	pthread_join(rb.t, NULL);
	vm_destroy(&b);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK_INT(system(cmd), ==, 0);
}

TEST(an_apply_to_a_vm_of_another_shape_is_refused)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		TEST_SKIP("/dev/kvm is absent: cannot run guests");
	struct msb_err err = {0};
	struct vm a;
	struct vm_config cfg = {.ncpus = 1, .mem_bytes = 4 << 20, .serial_fd = -1};
	if (vm_create(&a, &cfg, &err) < 0)
		TEST_FAIL("%s", err.msg);
	struct snapshot s;
	if (snap_capture(&a, &s, &err) < 0)
		TEST_FAIL("%s", err.msg);
	s.mem_bytes = 8 << 20;
	CHECK_INT(snap_apply(&a, &s, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	CHECK(strstr(err.msg, "does not match") != NULL);
	snap_free(&s);
	vm_destroy(&a);
}

TEST_MAIN(T(capture_write_read_apply_goes_on_counting),
	  T(an_apply_to_a_vm_of_another_shape_is_refused))
