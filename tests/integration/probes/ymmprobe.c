/* What user space sees (CPUID, XCR0), and whether the upper halves of the
 * YMM registers survive task switches.  Prints the CPUID bits; exit 0: fine
 * (or no AVX); 10: a YMM upper half changed (it holds another process's
 * pattern: the pid is in the top 32 bits; or zeros: lost across one of the
 * SIGUSR1s it sends itself every 100 rounds); 11/12: the signal handler was
 * not set up / did not run once per signal.  With argument `hold` it says
 * "ymmprobe: holding" at round 100 and goes on for 20 s of guest time.
 *
 * tests/integration/test_vmm_pvm.py (four_processes) starts four at once on
 * one vCPU through ymminit.c; without kernel patch 0006 + msb_pvm.avx on a PVM
 * host, 3 of 4 report another process's pattern within ~500 rounds.  Build with
 *   gcc -O2 -static -nostdlib -fno-stack-protector -no-pie -mgeneral-regs-only \
 *       -fno-tree-loop-distribute-patterns -o ymmprobe ymmprobe.c */
#include <stdint.h>
#include <sys/syscall.h>

static long sys3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return r;
}

static void hex(char *p, uint64_t v)
{
	for (int i = 15; i >= 0; i--, v >>= 4)
		p[i] = "0123456789abcdef"[v & 15];
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* SIGUSR1 handler: touches no vector register (-mgeneral-regs-only); the
 * interrupted code's YMM upper halves must survive its delivery and return. */
static volatile long signals;
static void on_usr1(int sig)
{
	(void)sig;
	signals++;
}
void ymm_restorer(void);
__asm__(".globl ymm_restorer\nymm_restorer:\n\tmov $15, %eax\n\tsyscall\n\thlt\n");

static uint64_t want[8] __attribute__((aligned(32)));
static uint64_t got[8] __attribute__((aligned(32)));

static int64_t now_s(void)
{
	struct {
		int64_t sec, nsec;
	} ts;
	sys3(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)&ts, 0);
	return ts.sec;
}

void cmain(long *sp);
void cmain(long *sp)
{
	/* argv[1] == "hold": go on for 20 s of guest time after round 100 */
	const char *arg = sp[0] > 1 ? ((char **)(sp + 1))[1] : "";
	int hold = arg[0] == 'h' && arg[1] == 'o' && arg[2] == 'l' && arg[3] == 'd' && !arg[4];
	int64_t until = 0;
	long sent = 0;
	uint32_t r1[4], r7[4];
	cpuid(1, 0, r1);
	cpuid(7, 0, r7);
	uint64_t xcr0 = 0;
	int osxsave = (r1[2] >> 27) & 1;
	if (osxsave) {
		uint32_t lo, hi;
		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		xcr0 = (uint64_t)hi << 32 | lo;
	}
	char line[] = "cpu: osxsave . avx . avx2 . avx512f . xcr0 ................\n";
	line[13] = '0' + osxsave;
	line[19] = '0' + ((r1[2] >> 28) & 1);
	line[26] = '0' + ((r7[1] >> 5) & 1);
	line[36] = '0' + ((r7[1] >> 16) & 1);
	hex(line + 43, xcr0);
	sys3(SYS_write, 1, (long)line, sizeof(line) - 1);
	if (!osxsave || (xcr0 & 6) != 6)
		sys3(SYS_exit_group, 0, 0, 0);
	uint64_t pid = (uint64_t)sys3(SYS_getpid, 0, 0, 0);
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		unsigned long mask;
	} act = {on_usr1, 0x04000000 /* SA_RESTORER */, ymm_restorer, 0};
	register long r10 __asm__("r10") = 8;
	long rc;
	__asm__ volatile("syscall"
			 : "=a"(rc)
			 : "a"((long)SYS_rt_sigaction), "D"(10L /* SIGUSR1 */), "S"(&act), "d"(0L),
			   "r"(r10)
			 : "rcx", "r11", "memory");
	if (rc != 0)
		sys3(SYS_exit_group, 11, 0, 0);
	for (int i = 0; i < 4; i++)
		want[i] = (pid << 32) | 0x77700000u | (uint64_t)i;
	__asm__ volatile("vmovdqa (%0), %%ymm7" : : "r"(want) : "memory");
	for (long round = 0; round < 3000 || (hold && now_s() < until); round++) {
		if (hold && round == 100) {
			until = now_s() + 20;
			sys3(SYS_write, 1, (long)"ymmprobe: holding\n", 18);
		}
		if (round % 100 == 50 && ++sent)
			sys3(SYS_kill, (long)pid, 10 /* SIGUSR1 */, 0);
		else
			sys3(round & 1 ? SYS_getppid : SYS_sched_yield, 0, 0, 0);
		__asm__ volatile("vmovdqa %%ymm7, (%0)" : : "r"(got) : "memory");
		for (int i = 0; i < 4; i++) {
			if (got[i] == want[i])
				continue;
			char l2[] =
				"ymmprobe: round ................ word . want ................ got "
				"................\n";
			hex(l2 + 16, (uint64_t)round);
			l2[38] = '0' + i;
			hex(l2 + 45, want[i]);
			hex(l2 + 66, got[i]);
			sys3(SYS_write, 2, (long)l2, sizeof(l2) - 1);
			sys3(SYS_exit_group, 10, 0, 0);
		}
	}
	if (signals != sent)
		sys3(SYS_exit_group, 12, 0, 0);
	sys3(SYS_write, 1, (long)"ok\n", 3);
	sys3(SYS_exit_group, 0, 0, 0);
}

__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall cmain\n\thlt\n");
