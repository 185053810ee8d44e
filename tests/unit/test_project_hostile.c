/* Hostile Sandboxfiles: each is refused cleanly (a usage error with a
 * position, no crash, bounded time and memory) or, where YAML allows it,
 * loaded with bounded work. */
#include "test.h"

#include <time.h>

#include "common/cleanup.h"
#include "project/sandboxfile.h"
#include "project/ytree.h"

static void refused(struct test_ctx *t, const char *yaml, size_t len, const char *needle)
{
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	if (msb_sandboxfile_parse(yaml, len, "Sandboxfile", "/p", &sf, &err) == 0) {
		msb_sandboxfile_free(sf);
		TEST_FAIL("accepted");
	}
	CHECK(sf == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK(strncmp(err.msg, "Sandboxfile", 11) == 0);
	if (needle && !strstr(err.msg, needle))
		TEST_FAIL("expected '%s' in: %s", needle, err.msg);
}

/* A time bound for work that must not blow up (an exponential blow-up takes
 * hours): generous, and scaled like every test timeout. */
static double limit(double seconds)
{
	const char *s = getenv("MSB_TEST_TIMEOUT_SCALE");
	double k = s ? atof(s) : 1.0;
	return seconds * (k > 0 ? k : 1.0);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(billion_laughs)
{
	/* 9 levels of 10 aliases each: 10^9 values if expanded. */
	char buf[4096];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
	for (int i = 1; i < 10; i++) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "a%d: &a%d [", i, i);
		for (int j = 0; j < 10; j++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s*a%d", j ? ", " : "",
					      i - 1);
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "]\n");
	}
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "sandboxes:\n  s:\n    image: x\n");
	double t0 = now();
	refused(t, buf, n, "every use of an alias");
	CHECK(now() - t0 < limit(2.0));
}

TEST(bounded_aliases_are_fine)
{
	const char *y = "base: &b {image: python, memory: 256}\n"
			"envs: &e [\"A=1\"]\n"
			"sandboxes:\n  a: *b\n  b: {image: x, envs: *e}\n";
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_parse(y, strlen(y), "S", "/p", &sf, &err), ==, 0);
	CHECK_STR(sf->sandboxes[0].image, "python");
	CHECK_INT(sf->sandboxes[0].memory_mib, ==, 256);
	CHECK_STR(sf->sandboxes[1].envs[0].name, "A");
	msb_sandboxfile_free(sf);
	/* A redefined anchor: later aliases get the latest definition. */
	const char *r = "a: &x one\nb: *x\nc: &x [two]\nd: *x\n";
	struct ydoc doc;
	CHECK_INT(ydoc_parse(r, strlen(r), "S", &doc, &err), ==, 0);
	CHECK_STR(ynode_map_get(doc.root, "b")->str, "one");
	CHECK_INT(ynode_map_get(doc.root, "d")->type, ==, YN_SEQ);
	ydoc_free(&doc);
}

TEST(recursive_and_unknown_aliases)
{
	const char *r = "a: &x [1, *x]\n";
	refused(t, r, strlen(r), "recursive");
	const char *u = "sandboxes:\n  a: *nothing\n";
	refused(t, u, strlen(u), "no anchor");
}

TEST(deep_nesting)
{
	size_t depth = 100000;
	_cleanup_free_ char *y = malloc(2 * depth + 1);
	CHECK(y != NULL);
	memset(y, '[', depth);
	memset(y + depth, ']', depth);
	y[2 * depth] = '\0';
	refused(t, y, 2 * depth, "nested more than 64");
	/* Block-style nesting too. */
	char *b = malloc(200 * 70);
	CHECK(b != NULL);
	size_t n = 0;
	for (int i = 0; i < 70; i++)
		n += (size_t)sprintf(b + n, "%*sk%d:\n", i, "", i);
	refused(t, b, n, "nested");
	free(b);
}

TEST(huge_inputs)
{
	size_t big = YTREE_MAX_INPUT_BYTES + 1;
	_cleanup_free_ char *y = malloc(big + 1);
	CHECK(y != NULL);
	memset(y, '#', big);
	y[big] = '\0';
	refused(t, y, big, "larger than 1 MiB");
	/* A 900 KB image name: under the file limit, refused by the value check. */
	size_t n = 900 * 1000;
	_cleanup_free_ char *s = malloc(n + 64);
	CHECK(s != NULL);
	size_t k = (size_t)sprintf(s, "sandboxes:\n  a:\n    image: ");
	memset(s + k, 'a', n);
	s[k + n] = '\n';
	refused(t, s, k + n + 1, "longer than 512");
	/* Many keys: bounded (duplicate check is n log n). */
	size_t cnt = 20000, cap = cnt * 16 + 64;
	_cleanup_free_ char *m = malloc(cap);
	CHECK(m != NULL);
	size_t l = (size_t)sprintf(m, "x:\n");
	for (size_t i = 0; i < cnt; i++)
		l += (size_t)sprintf(m + l, "  k%zu: 1\n", i);
	l += (size_t)sprintf(m + l, "  k7: 2\n");
	double t0 = now();
	refused(t, m, l, "appears twice");
	CHECK(now() - t0 < limit(4.0));
}

TEST(many_anchors_and_aliases)
{
	/* 1024 anchors, then as many aliases of the first as fit in 1 MiB: fast. */
	size_t cap = YTREE_MAX_INPUT_BYTES;
	_cleanup_free_ char *y = malloc(cap + 1);
	CHECK(y != NULL);
	size_t n = (size_t)sprintf(y, "anchors:\n");
	for (int i = 0; i < YTREE_MAX_ANCHORS; i++)
		n += (size_t)sprintf(y + n, "  - &a%d %d\n", i, i);
	n += (size_t)sprintf(y + n, "uses: [");
	while (n + 16 < cap)
		n += (size_t)sprintf(y + n, "*a0,");
	n += (size_t)sprintf(y + n, "*a0]\n");
	double t0 = now();
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	int rc = msb_sandboxfile_parse(y, n, "Sandboxfile", "/p", &sf, &err);
	if (rc == 0)
		msb_sandboxfile_free(sf);
	CHECK(now() - t0 < limit(4.0));
	/* One anchor more is refused. */
	n = (size_t)sprintf(y, "anchors:\n");
	for (int i = 0; i <= YTREE_MAX_ANCHORS; i++)
		n += (size_t)sprintf(y + n, "  - &a%d %d\n", i, i);
	refused(t, y, n, "more than 1024 anchors");
}

TEST(duplicate_keys)
{
	const char *y = "sandboxes:\n  a:\n    image: x\n  a:\n    image: y\n";
	refused(t, y, strlen(y),
		"Sandboxfile:4:3: 'a' appears twice in this mapping (first on line 2)");
	const char *z = "sandboxes: {}\nsandboxes: {}\n";
	refused(t, z, strlen(z), "Sandboxfile:2:1:");
	const char *w = "sandboxes:\n  a: {image: x, image: y}\n";
	refused(t, w, strlen(w), "'image' appears twice");
}

TEST(invalid_utf8_and_control_bytes)
{
	const char *y = "sandboxes:\n  a:\n    image: \xff\xfe\n";
	refused(t, y, strlen(y), "Sandboxfile:3:12:");
	refused(t, y, strlen(y), "UTF-8");
	const char over[] = "sandboxes:\n  a: {image: \xc0\xaf}\n";
	refused(t, over, sizeof(over) - 1, "UTF-8");
	const char nul[] = "sandboxes:\n  a: {image: x}\0\n";
	refused(t, nul, sizeof(nul) - 1, NULL);
	const char utf16[] = "\xff\xfes\0a\0";
	refused(t, utf16, sizeof(utf16) - 1, NULL);
	const char ctl[] = "sandboxes:\n  a: {image: \"x\x01\"}\n";
	refused(t, ctl, sizeof(ctl) - 1, NULL);
}

TEST(tags_documents_and_keys)
{
	const char *tag = "sandboxes:\n  a: !!python/object:os.system {image: x}\n";
	refused(t, tag, strlen(tag), "tag");
	const char *docs = "sandboxes: {}\n---\nsandboxes: {}\n";
	refused(t, docs, strlen(docs), "one YAML document");
	const char *ckey = "sandboxes:\n  ? [a, b]\n  : {image: x}\n";
	refused(t, ckey, strlen(ckey), "plain name");
	const char *syntax = "sandboxes:\n  a: {image: x\n";
	refused(t, syntax, strlen(syntax), "Sandboxfile:3:1:");
	const char *tabs = "sandboxes:\n\ta: {image: x}\n";
	refused(t, tabs, strlen(tabs), "Sandboxfile:2:");
	/* !!str is allowed: it makes a number text. */
	const char *str = "sandboxes:\n  a: {image: !!str 123}\n";
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_parse(str, strlen(str), "S", "/p", &sf, &err), ==, 0);
	CHECK_STR(sf->sandboxes[0].image, "123");
	msb_sandboxfile_free(sf);
	const char *intmem = "sandboxes:\n  a: {image: x, memory: !!str 12}\n";
	refused(t, intmem, strlen(intmem), "without quotes");
}

TEST_MAIN(T(billion_laughs), T(bounded_aliases_are_fine), T(recursive_and_unknown_aliases),
	  T(deep_nesting), T(huge_inputs), T(many_anchors_and_aliases), T(duplicate_keys),
	  T(invalid_utf8_and_control_bytes), T(tags_documents_and_keys))
