#include "common/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int msb_home(char *buf, size_t len, struct msb_err *err)
{
	const char *h = getenv("MICROSANDBOX_HOME");
	int n;
	if (h && *h) {
		n = snprintf(buf, len, "%s", h);
	} else {
		const char *home = getenv("HOME");
		if (!home || !*home)
			return msb_err_set(
				err, MSB_EK_USAGE, 0,
				"neither MICROSANDBOX_HOME nor HOME is set; set "
				"MICROSANDBOX_HOME to the directory microsandbox should use");
		n = snprintf(buf, len, "%s/.microsandbox", home);
	}
	if (n < 0 || (size_t)n >= len)
		return msb_err_set(err, MSB_EK_USAGE, 0, "the microsandbox home path is too long");
	return 0;
}

int msb_mkdir_p(const char *path, unsigned mode, struct msb_err *err)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(tmp))
		return msb_err_set(err, MSB_EK_USAGE, 0, "bad directory path '%s'", path);
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return msb_err_sys(err, "creating directory %s", tmp);
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return msb_err_sys(err, "creating directory %s", tmp);
	return 0;
}
