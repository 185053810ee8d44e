#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int msb_err_vset(struct msb_err *err, enum msb_err_kind kind, int errnum, const char *fmt,
		 va_list ap)
{
	if (!err)
		return -1;
	err->kind = kind;
	err->errnum = errnum;
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (n < 0)
		n = 0;
	if (errnum && (size_t)n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(errnum));
	return -1;
}

int msb_err_set(struct msb_err *err, enum msb_err_kind kind, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	msb_err_vset(err, kind, errnum, fmt, ap);
	va_end(ap);
	return -1;
}

int msb_err_wrap(struct msb_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char buf[MSB_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	size_t used = n < 0 ? 0 : (size_t)n;
	if (used > sizeof(buf) - 1)
		used = sizeof(buf) - 1;
	/* Truncation is intended: the root cause may be cut, the context never. */
	const char sep[] = ": ";
	for (size_t i = 0; i < 2 && used < sizeof(buf) - 1; i++)
		buf[used++] = sep[i];
	size_t old_len = strnlen(err->msg, sizeof(err->msg));
	size_t room = sizeof(buf) - 1 - used;
	if (old_len > room)
		old_len = room;
	memcpy(buf + used, err->msg, old_len);
	used += old_len;
	buf[used] = '\0';
	memcpy(err->msg, buf, used + 1);
	if (err->kind == MSB_EK_NONE)
		err->kind = MSB_EK_INTERNAL;
	return -1;
}

void msb_err_clear(struct msb_err *err)
{
	err->kind = MSB_EK_NONE;
	err->errnum = 0;
	err->msg[0] = '\0';
}

static const char *const kind_names[] = {
	[MSB_EK_NONE] = "none",		  [MSB_EK_USAGE] = "usage",
	[MSB_EK_NOT_FOUND] = "not_found", [MSB_EK_EXISTS] = "exists",
	[MSB_EK_STATE] = "state",	  [MSB_EK_SYSTEM] = "system",
	[MSB_EK_NETWORK] = "network",	  [MSB_EK_GUEST] = "guest",
	[MSB_EK_TIMEOUT] = "timeout",	  [MSB_EK_CORRUPT] = "corrupt",
	[MSB_EK_INTERNAL] = "internal",
};

const char *msb_err_kind_name(enum msb_err_kind kind)
{
	if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return "internal";
	return kind_names[kind];
}

int msb_err_exit_code(enum msb_err_kind kind)
{
	switch (kind) {
	case MSB_EK_NONE:
		return 0;
	case MSB_EK_USAGE:
		return 2;
	case MSB_EK_NOT_FOUND:
		return 3;
	case MSB_EK_EXISTS:
	case MSB_EK_STATE:
		return 4;
	case MSB_EK_TIMEOUT:
		return 5;
	case MSB_EK_NETWORK:
		return 6;
	case MSB_EK_GUEST:
		return 7;
	case MSB_EK_CORRUPT:
		return 8;
	case MSB_EK_SYSTEM:
	case MSB_EK_INTERNAL:
	default:
		return 1;
	}
}
