/* Where microsandbox keeps its state. */
#ifndef MSB_COMMON_PATHS_H
#define MSB_COMMON_PATHS_H

#include <stddef.h>

#include "common/error.h"

/* $MICROSANDBOX_HOME, else $HOME/.microsandbox.  Writes into buf (NUL-terminated);
 * -1 with err when neither variable helps or the result does not fit. */
int msb_home(char *buf, size_t len, struct msb_err *err);

/* mkdir -p with the given mode for directories it creates. */
int msb_mkdir_p(const char *path, unsigned mode, struct msb_err *err);

#endif
