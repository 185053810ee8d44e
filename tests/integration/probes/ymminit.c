/* /init of the AVX state test guest: runs four ymmprobe processes at once on
 * one vCPU, prints how many saw another process's YMM state, and powers off
 * with status 0 (none) or 1 on msb-vmm's power port (exit 0 or 7).  With
 * `hold` on the kernel command line (an argument of /init) it passes `hold` on
 * to the probes, which then keep checking for 20 s of guest time after saying
 * "ymmprobe: holding" (time for a snapshot and restore in between).
 *   gcc -O2 -static -nostdlib -fno-stack-protector -no-pie -mgeneral-regs-only \
 *       -fno-tree-loop-distribute-patterns \
 *       -o ymminit ymminit.c
 * tests/integration/test_vmm_pvm.py builds it with ymmprobe into an initramfs. */
#include <stdint.h>
#include "guest_sys.h"

static void say(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	sys4(SYS_write, 1, (long)s, n, 0);
}

static int is_hold(const char *a)
{
	return a[0] == 'h' && a[1] == 'o' && a[2] == 'l' && a[3] == 'd' && !a[4];
}

void cmain(long *sp);
void cmain(long *sp)
{
	char **args = (char **)(sp + 1);
	int hold = 0;
	for (long i = 1; i < sp[0]; i++)
		hold |= is_hold(args[i]);
	static char *argv[] = {"/ymmprobe", 0, 0};
	if (hold)
		argv[1] = "hold";
	static char *const envp[] = {0};
	enum { N = 4 };
	for (int i = 0; i < N; i++) {
		long pid = sys4(SYS_fork, 0, 0, 0, 0);
		if (pid == 0) {
			sys4(SYS_execve, (long)argv[0], (long)argv, (long)envp, 0);
			sys4(SYS_exit_group, 127, 0, 0, 0);
		}
	}
	int bad = 0, reaped = 0;
	while (reaped < N) {
		int status = 0;
		long pid = sys4(SYS_wait4, -1, (long)&status, 0, 0);
		if (pid < 0)
			break;
		reaped++;
		if (status != 0)
			bad++;
	}
	char line[] = "ymminit: . of . probes saw another process's YMM state\n";
	line[9] = (char)('0' + bad + (N - reaped));
	line[14] = '0' + N;
	say(line);
	sys4(SYS_iopl, 3, 0, 0, 0);
	uint8_t st = bad || reaped != N;
	__asm__ volatile("outb %0, %1" : : "a"(st), "Nd"((uint16_t)0x510));
	for (;;)
		sys4(SYS_pause, 0, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n\thlt\n");
