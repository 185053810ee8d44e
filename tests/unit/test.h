/* A small unit-test harness.  Each test file ends with
 *
 *   TEST_MAIN(T(first_test), T(second_test))
 *
 * and prints one TAP-like line per test plus a closing
 * "# N passed, N failed, N skipped" line that scripts/run-unit adds up.
 * A failed CHECK reports file:line and the expression, and stops that test only.
 */
#ifndef MSB_TEST_H
#define MSB_TEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_ctx {
	jmp_buf jb;
	int failed;
	int skipped;
	char why[512];
};

struct test_case {
	const char *name;
	void (*fn)(struct test_ctx *t);
};

#define TEST(name) static void name(struct test_ctx *t)
#define T(name)             \
	{                   \
#name, name \
	}

#define TEST_FAIL(...)                                                                    \
	do {                                                                              \
		t->failed = 1;                                                            \
		int n_ = snprintf(t->why, sizeof(t->why), "%s:%d: ", __FILE__, __LINE__); \
		snprintf(t->why + n_, sizeof(t->why) - (size_t)n_, __VA_ARGS__);          \
		longjmp(t->jb, 1);                                                        \
	} while (0)

#define TEST_SKIP(...)                                         \
	do {                                                   \
		t->skipped = 1;                                \
		snprintf(t->why, sizeof(t->why), __VA_ARGS__); \
		longjmp(t->jb, 1);                             \
	} while (0)

#define CHECK(cond)                                           \
	do {                                                  \
		if (!(cond))                                  \
			TEST_FAIL("check failed: %s", #cond); \
	} while (0)

#define CHECK_INT(a, op, b)                                                                      \
	do {                                                                                     \
		long long a_ = (long long)(a), b_ = (long long)(b);                              \
		if (!(a_ op b_))                                                                 \
			TEST_FAIL("check failed: %s %s %s (%lld vs %lld)", #a, #op, #b, a_, b_); \
	} while (0)

#define CHECK_STR(a, b)                                                                \
	do {                                                                           \
		const char *a_ = (a), *b_ = (b);                                       \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                                 \
			TEST_FAIL("check failed: %s == %s (\"%s\" vs \"%s\")", #a, #b, \
				  a_ ? a_ : "(null)", b_ ? b_ : "(null)");             \
	} while (0)

static inline int test_run(const struct test_case *cases, size_t n, const char *file)
{
	volatile int passed = 0, failed = 0, skipped = 0;
	for (size_t i = 0; i < n; i++) {
		static struct test_ctx t;
		memset(&t, 0, sizeof(t));
		if (setjmp(t.jb) == 0)
			cases[i].fn(&t);
		if (t.skipped) {
			printf("ok %zu - %s # SKIP %s\n", i + 1, cases[i].name, t.why);
			skipped++;
		} else if (t.failed) {
			printf("not ok %zu - %s\n#   %s\n", i + 1, cases[i].name, t.why);
			failed++;
		} else {
			printf("ok %zu - %s\n", i + 1, cases[i].name);
			passed++;
		}
		fflush(stdout);
	}
	printf("# %s: %d passed, %d failed, %d skipped\n", file, passed, failed, skipped);
	return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                                 \
	int main(void)                                                                 \
	{                                                                              \
		static const struct test_case cases_[] = {__VA_ARGS__};                \
		return test_run(cases_, sizeof(cases_) / sizeof(cases_[0]), __FILE__); \
	}

#endif
