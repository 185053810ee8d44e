/* /init of a context-switch cost guest: two processes pass one byte back and
 * forth over two pipes (every round trip is two task switches on one vCPU),
 * prints how long ROUNDS round trips took, and powers off on msb-vmm's power
 * port.  Compares a guest kernel with and without patch 0006 (msb_pvm.avx:
 * each switch adds an AVX save and load through msb-vmm); docs/kernel.md.
 *   gcc -O2 -static -nostdlib -fno-stack-protector -no-pie -mgeneral-regs-only \
 *       -fno-tree-loop-distribute-patterns -o init pipepong.c
 * and boot it as the only file of an initramfs (`msb-vmm --initrd`). */
#include <stdint.h>
#include "guest_sys.h"

enum { ROUNDS = 2000 };

static int64_t now_us(void)
{
	struct {
		int64_t sec, nsec;
	} ts;
	sys4(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)&ts, 0, 0);
	return ts.sec * 1000000 + ts.nsec / 1000;
}

static void say_num(const char *a, int64_t v, const char *b)
{
	char line[128];
	int n = 0;
	while (*a)
		line[n++] = *a++;
	char digits[24];
	int d = 0;
	do
		digits[d++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (d > 0)
		line[n++] = digits[--d];
	while (*b)
		line[n++] = *b++;
	sys4(SYS_write, 1, (long)line, n, 0);
}

void cmain(void);
void cmain(void)
{
	int ab[2], ba[2];
	sys4(SYS_pipe2, (long)ab, 0, 0, 0);
	sys4(SYS_pipe2, (long)ba, 0, 0, 0);
	char c = 'x';
	long pid = sys4(SYS_fork, 0, 0, 0, 0);
	if (pid == 0) {
		for (int i = 0; i < ROUNDS; i++) {
			sys4(SYS_read, ab[0], (long)&c, 1, 0);
			sys4(SYS_write, ba[1], (long)&c, 1, 0);
		}
		sys4(SYS_exit_group, 0, 0, 0, 0);
	}
	int64_t t0 = now_us();
	for (int i = 0; i < ROUNDS; i++) {
		sys4(SYS_write, ab[1], (long)&c, 1, 0);
		sys4(SYS_read, ba[0], (long)&c, 1, 0);
	}
	int64_t t = now_us() - t0;
	say_num("pipepong: ", ROUNDS, " round trips in ");
	say_num("", t, " us\n");
	say_num("pipepong: ", t * 1000 / ROUNDS / 2, " ns per task switch\n");
	int status = 0;
	sys4(SYS_wait4, pid, (long)&status, 0, 0);
	sys4(SYS_iopl, 3, 0, 0, 0);
	__asm__ volatile("outb %0, %1" : : "a"((uint8_t)0), "Nd"((uint16_t)0x510));
	for (;;)
		sys4(SYS_pause, 0, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tand $-16, %rsp\n\tcall cmain\n\thlt\n");
