/* msb_now_ms (src/common/clock.c): monotonic milliseconds that move with time. */
#include <time.h>

#include "common/clock.h"
#include "test.h"

TEST(advances_with_time_and_never_goes_back)
{
	int64_t a = msb_now_ms();
	CHECK(a > 0);
	struct timespec d = {.tv_nsec = 30 * 1000000};
	nanosleep(&d, NULL);
	int64_t b = msb_now_ms();
	CHECK_INT(b - a, >=, 30);
	CHECK_INT(b - a, <, 30000);
	for (int i = 0; i < 1000; i++) {
		int64_t c = msb_now_ms();
		CHECK_INT(c, >=, b);
		b = c;
	}
}

TEST_MAIN(T(advances_with_time_and_never_goes_back))
