#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide by nature: there is one stderr. */
static enum msb_log_level log_level = MSB_LOG_WARN;
static const char *log_prog = "msb";

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void msb_log_init(const char *progname)
{
	if (progname)
		log_prog = progname;
	const char *env = getenv("MSB_LOG");
	if (!env)
		return;
	for (int i = 0; i <= MSB_LOG_TRACE; i++)
		if (strcmp(env, level_names[i]) == 0)
			log_level = (enum msb_log_level)i;
}

void msb_log_set_level(enum msb_log_level level)
{
	log_level = level;
}

int msb_log_enabled(enum msb_log_level level)
{
	return level <= log_level;
}

void msb_log(enum msb_log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	int saved = errno;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s: %s\n", log_prog, level_names[level], line);
	errno = saved;
}
