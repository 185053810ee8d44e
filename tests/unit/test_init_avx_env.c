/* The environment msb-init gives commands when the guest kernel does not save
 * AVX state (src/init/exec.c, exec_avx_env). */
#include <stdint.h>
#include <string.h>

#include "init/exec.h"
#include "test.h"

static const char *find(const char *const *v, size_t n, const char *prefix)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(v[i], prefix, strlen(prefix)) == 0)
			return v[i];
	return NULL;
}

TEST(kernel_that_saves_avx_gets_nothing)
{
	const char *v[EXEC_AVX_ENV_MAX];
	/* Hardware KVM or the host: the kernel manages what XCR0 enables. */
	CHECK_INT(exec_avx_env(0xe7, 0x2e7, v), ==, 0);
	CHECK_INT(exec_avx_env(0x7, 0x7, v), ==, 0);
	/* No AVX enabled at all: nothing to protect. */
	CHECK_INT(exec_avx_env(0x3, 0x3, v), ==, 0);
}

TEST(noxsave_guest_gets_glibc_openssl_and_go_off_avx)
{
	const char *v[EXEC_AVX_ENV_MAX];
	/* PVM: the host's XCR0 (x87, SSE, AVX, opmask, ZMM) over a noxsave kernel. */
	size_t n = exec_avx_env(0xe7, 0x3, v);
	CHECK_INT(n, ==, 3);
	const char *g = find(v, n, "GLIBC_TUNABLES=glibc.cpu.hwcaps=");
	CHECK(g && strstr(g, "-AVX2") && strstr(g, "-AVX512F"));
	const char *o = find(v, n, "OPENSSL_ia32cap=~");
	CHECK(o != NULL);
	/* The AVX bit (CPUID.1 ECX 28 = word bit 60) and AVX2 (CPUID.7 EBX 5). */
	unsigned long long w1 = strtoull(o + strlen("OPENSSL_ia32cap=~"), NULL, 16);
	const char *second = strstr(o, ":~");
	CHECK(second != NULL);
	unsigned long long w2 = strtoull(second + 2, NULL, 16);
	CHECK(w1 & (1ull << 60));
	CHECK(w2 & (1ull << 5));
	CHECK(w2 & (1ull << 16));     /* AVX512F */
	CHECK(!(w1 & 0xffffffffull)); /* CPUID.1 EDX (SSE, SSE2 ...) kept */
	const char *go = find(v, n, "GODEBUG=");
	CHECK(go && strstr(go, "cpu.avx=off") && strstr(go, "cpu.avx2=off"));
	/* Only the AVX-512 part unmanaged (YMM saved): still off. */
	CHECK_INT(exec_avx_env(0xe7, 0x7, v), ==, 3);
}

TEST_MAIN(T(kernel_that_saves_avx_gets_nothing), T(noxsave_guest_gets_glibc_openssl_and_go_off_avx))
