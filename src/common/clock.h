/* The one clock for deadlines and intervals. */
#ifndef MSB_COMMON_CLOCK_H
#define MSB_COMMON_CLOCK_H

#include <stdint.h>

/* Milliseconds of CLOCK_MONOTONIC: never goes back, not the time of day. */
int64_t msb_now_ms(void);

#endif
