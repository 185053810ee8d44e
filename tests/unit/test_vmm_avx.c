/* msb-vmm switching AVX state for a noxsave guest kernel (src/vmm/avx.c): a
 * tiny guest writes the save and load ports; the test checks guest memory and
 * the vCPU's XSAVE state on the real /dev/kvm. */
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tests/unit/test.h"
#include "vmm/avx.h"
#include "vmm/vm.h"

#define CODE_AT	 0x100000
#define SAVE_TO	 0x200000 /* register areas, 64-byte aligned */
#define LOAD_OUT 0x201000

/* mov dx, port; mov eax, imm32; out dx, eax */
#define OUTL(port, v)                                                            \
	0x66, 0xba, (port)&0xff, (port) >> 8, 0xb8, (v)&0xff, ((v) >> 8) & 0xff, \
		((v) >> 16) & 0xff, ((v) >> 24) & 0xff, 0xef

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void run(struct test_ctx *t, bool assist, uint8_t *saved, uint8_t *loaded_ymm)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		TEST_SKIP("/dev/kvm is absent: cannot run guests");
	const uint8_t code[] = {OUTL(AVX_SAVE_PORT, SAVE_TO >> 6),
				OUTL(AVX_SAVE_PORT, 0xffffffffu), /* outside RAM: ignored */
				OUTL(AVX_LOAD_PORT, LOAD_OUT >> 6),
				0x66,
				0xba,
				0x10,
				0x05,
				0xb0,
				0x00,
				0xee, /* mov dx, 0x510; mov al, 0; out dx, al */
				0xeb,
				0xfe};
	struct vm vm;
	struct vm_config cfg = {.ncpus = 1, .mem_bytes = 4 << 20, .serial_fd = -1};
	struct msb_err err = {0};
	if (vm_create(&vm, &cfg, &err) < 0 ||
	    vm_load_raw(&vm, code, sizeof(code), CODE_AT, &err) < 0)
		TEST_FAIL("%s", err.msg);
	vm.avx_assist = assist;
	/* The vCPU's YMM upper halves: pattern 0x10; guest memory to load: 0x80. */
	static struct kvm_xsave xs;
	CHECK(ioctl(vm.vcpus[0].fd, KVM_GET_XSAVE, &xs) == 0);
	uint8_t *reg = (uint8_t *)xs.region;
	fill(reg + 576, 256, 0x10);
	reg[512] |= 4; /* XSTATE_BV: YMM in use */
	if (ioctl(vm.vcpus[0].fd, KVM_SET_XSAVE, &xs) != 0) {
		vm_destroy(&vm);
		TEST_SKIP("KVM_SET_XSAVE refuses YMM state (no AVX here)");
	}
	uint8_t *in = gm_ptr(&vm.mem, LOAD_OUT, AVX_AREA_END);
	CHECK(in != NULL);
	fill(in + 576, 256, 0x80);
	int code_rc = vm_run(&vm, -1, 0, 20000);
	CHECK_INT(code_rc, ==, VM_EXIT_OK);
	memcpy(saved, gm_ptr(&vm.mem, SAVE_TO, AVX_AREA_END), AVX_AREA_END);
	CHECK(ioctl(vm.vcpus[0].fd, KVM_GET_XSAVE, &xs) == 0);
	memcpy(loaded_ymm, reg + 576, 256);
	vm_destroy(&vm);
}

TEST(save_copies_the_vcpu_state_and_load_sets_it)
{
	static uint8_t saved[AVX_AREA_END], ymm[256], want[256];
	run(t, true, saved, ymm);
	fill(want, 256, 0x10);
	CHECK(memcmp(saved + 576, want, 256) == 0);
	/* Components in their init state are saved as zeros; the FXSAVE part is the guest's. */
	for (unsigned i = 1088; i < AVX_AREA_END; i++)
		CHECK_INT(saved[i], ==, 0);
	for (unsigned i = 0; i < 576; i++)
		CHECK_INT(saved[i], ==, 0);
	fill(want, 256, 0x80);
	CHECK(memcmp(ymm, want, 256) == 0);
}

TEST(without_assist_the_ports_do_nothing)
{
	static uint8_t saved[AVX_AREA_END], ymm[256], want[256];
	run(t, false, saved, ymm);
	for (unsigned i = 0; i < AVX_AREA_END; i++)
		CHECK_INT(saved[i], ==, 0);
	fill(want, 256, 0x10);
	CHECK(memcmp(ymm, want, 256) == 0);
}

TEST_MAIN(T(save_copies_the_vcpu_state_and_load_sets_it), T(without_assist_the_ports_do_nothing))
