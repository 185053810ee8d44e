/* The raw system call of the probes' freestanding guest programs (no libc:
 * they run as /init of an initramfs), shared by ymminit.c and pipepong.c. */
#ifndef PROBES_GUEST_SYS_H
#define PROBES_GUEST_SYS_H

#include <sys/syscall.h>

static inline long sys4(long n, long a, long b, long c, long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return r;
}

#endif
