/* PVM host detection (pvm.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/pvm.h"

static bool exists_under(const char *root, const char *rel)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/%s", root, rel) >= (int)sizeof(p))
		return false;
	return access(p, F_OK) == 0;
}

/* 1: a flags line names vmx or svm; 0: flags lines without them; -1: no flags
 * line (unreadable, or not x86). */
static int cpuinfo_has_hw_virt(const char *root)
{
	char p[PATH_MAX];
	if (snprintf(p, sizeof(p), "%s/proc/cpuinfo", root) >= (int)sizeof(p))
		return -1;
	_cleanup_fclose_ FILE *f = fopen(p, "re");
	if (!f)
		return -1;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	int seen = -1;
	while (getline(&line, &cap, f) >= 0) {
		if (strncmp(line, "flags", 5) != 0 || !strchr(line, ':'))
			continue;
		seen = 0;
		for (char *save = NULL, *w = strtok_r(strchr(line, ':') + 1, " \t\n", &save); w;
		     w = strtok_r(NULL, " \t\n", &save))
			if (strcmp(w, "vmx") == 0 || strcmp(w, "svm") == 0)
				return 1;
	}
	return seen;
}

int msb_pvm_detect(const char *root, const char *env, struct msb_pvm *out, struct msb_err *err)
{
	if (env && *env) {
		if (strcmp(env, "1") && strcmp(env, "0"))
			return msb_err_set(
				err, MSB_EK_USAGE, 0,
				"MSB_PVM='%.32s': use 1 (the host is PVM: give the guest "
				"kernel the PVM workarounds) or 0 (hardware KVM), or unset it "
				"to detect",
				env);
		*out = env[0] == '1' ? (struct msb_pvm){true, "MSB_PVM=1"}
				     : (struct msb_pvm){false, "MSB_PVM=0"};
		return 0;
	}
	if (exists_under(root, "sys/module/kvm_pvm"))
		*out = (struct msb_pvm){true, "/sys/module/kvm_pvm exists"};
	else if (exists_under(root, "sys/module/kvm_intel"))
		*out = (struct msb_pvm){false, "/sys/module/kvm_intel exists"};
	else if (exists_under(root, "sys/module/kvm_amd"))
		*out = (struct msb_pvm){false, "/sys/module/kvm_amd exists"};
	else {
		int hw = cpuinfo_has_hw_virt(root);
		if (hw == 0)
			*out = (struct msb_pvm){true, "the host CPU has neither vmx nor svm"};
		else if (hw == 1)
			*out = (struct msb_pvm){false, "the host CPU has vmx or svm"};
		else
			*out = (struct msb_pvm){false, "no sign of PVM"};
	}
	return 0;
}

int msb_pvm_host(struct msb_pvm *out, struct msb_err *err)
{
	return msb_pvm_detect("", getenv("MSB_PVM"), out, err);
}

const char *msb_pvm_cmdline_extra(const struct msb_pvm *pvm, const char *base)
{
	return pvm->pvm && !(base && strstr(base, "noxsave")) ? MSB_PVM_CMDLINE : NULL;
}
