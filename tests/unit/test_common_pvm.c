/* PVM host detection (src/common/pvm.c) on fake /sys and /proc trees. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pvm.h"
#include "test.h"

static char root[64];

static void mkroot(struct test_ctx *t)
{
	snprintf(root, sizeof(root), "/tmp/msb-pvm-XXXXXX");
	CHECK(mkdtemp(root) != NULL);
}

static void add(struct test_ctx *t, const char *rel, const char *content)
{
	char p[256];
	snprintf(p, sizeof(p), "mkdir -p '%s/%s'", root, rel);
	if (content) { /* a file: make its directory, then write it */
		snprintf(p, sizeof(p), "mkdir -p \"$(dirname '%s/%s')\"", root, rel);
		CHECK(system(p) == 0);
		snprintf(p, sizeof(p), "%s/%s", root, rel);
		FILE *f = fopen(p, "w");
		CHECK(f != NULL);
		fputs(content, f);
		fclose(f);
		return;
	}
	CHECK(system(p) == 0);
}

static void rmroot(void)
{
	char p[128];
	snprintf(p, sizeof(p), "rm -rf '%s'", root);
	if (system(p) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

static struct msb_pvm decide(struct test_ctx *t, const char *env)
{
	struct msb_pvm r = {0};
	struct msb_err err = {0};
	if (msb_pvm_detect(root, env, &r, &err) < 0)
		TEST_FAIL("msb_pvm_detect: %s", err.msg);
	CHECK(r.why != NULL);
	return r;
}

#define AMD_FLAGS \
	"flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr avx avx2 hypervisor\n"

TEST(pvm_module_means_pvm)
{
	mkroot(t);
	add(t, "sys/module/kvm_pvm/parameters", NULL);
	add(t, "proc/cpuinfo", AMD_FLAGS);
	struct msb_pvm r = decide(t, NULL);
	CHECK(r.pvm);
	CHECK_STR(r.why, "/sys/module/kvm_pvm exists");
	rmroot();
}

TEST(hardware_module_means_hardware)
{
	mkroot(t);
	add(t, "sys/module/kvm_amd", NULL);
	add(t, "proc/cpuinfo", "flags\t\t: fpu svm avx\n");
	CHECK(!decide(t, NULL).pvm);
	CHECK(!decide(t, "").pvm);
	rmroot();
	mkroot(t);
	add(t, "sys/module/kvm_intel", NULL);
	CHECK(!decide(t, NULL).pvm);
	rmroot();
}

TEST(cpu_without_vmx_or_svm_means_pvm)
{
	mkroot(t);
	add(t, "proc/cpuinfo", "processor\t: 0\n" AMD_FLAGS "processor\t: 1\n" AMD_FLAGS);
	struct msb_pvm r = decide(t, NULL);
	CHECK(r.pvm);
	rmroot();
	mkroot(t);
	add(t, "proc/cpuinfo", "flags\t\t: fpu vmx avx\n");
	CHECK(!decide(t, NULL).pvm);
	rmroot();
}

TEST(nothing_known_means_hardware)
{
	mkroot(t);
	struct msb_pvm r = decide(t, NULL);
	CHECK(!r.pvm);
	CHECK_STR(r.why, "no sign of PVM");
	rmroot();
}

TEST(env_overrides_both_ways)
{
	mkroot(t);
	add(t, "sys/module/kvm_pvm", NULL);
	struct msb_pvm r = decide(t, "0");
	CHECK(!r.pvm);
	CHECK_STR(r.why, "MSB_PVM=0");
	rmroot();
	mkroot(t);
	add(t, "sys/module/kvm_intel", NULL);
	r = decide(t, "1");
	CHECK(r.pvm);
	CHECK_STR(r.why, "MSB_PVM=1");
	rmroot();
}

TEST(bad_env_is_a_usage_error)
{
	mkroot(t);
	const char *bad[] = {"yes", "2", "01", "true", " 1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct msb_pvm r = {0};
		struct msb_err err = {0};
		CHECK_INT(msb_pvm_detect(root, bad[i], &r, &err), ==, -1);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		CHECK(strstr(err.msg, "MSB_PVM") != NULL);
		CHECK(strstr(err.msg, "unset it") != NULL);
	}
	rmroot();
}

TEST(workarounds_appended_once_and_only_on_pvm)
{
	struct msb_pvm pvm = {.pvm = true}, hw = {.pvm = false};
	CHECK_STR(msb_pvm_cmdline_extra(&pvm, "console=hvc0 quiet"), MSB_PVM_CMDLINE);
	CHECK_STR(msb_pvm_cmdline_extra(&pvm, NULL), MSB_PVM_CMDLINE);
	CHECK(msb_pvm_cmdline_extra(&pvm, "console=hvc0 noxsave quiet") == NULL);
	CHECK(msb_pvm_cmdline_extra(&hw, "console=hvc0 quiet") == NULL);
	CHECK(msb_pvm_cmdline_extra(&hw, NULL) == NULL);
}

TEST_MAIN(T(pvm_module_means_pvm), T(hardware_module_means_hardware),
	  T(cpu_without_vmx_or_svm_means_pvm), T(nothing_known_means_hardware),
	  T(env_overrides_both_ways), T(bad_env_is_a_usage_error),
	  T(workarounds_appended_once_and_only_on_pvm))
