/* Upstream's env_pair, path_pair, port_pair, path_segment and reference_path
 * tests, rewritten against this project's parsers, plus the name rule. */
#include "test.h"

#include "common/cleanup.h"
#include "oci/ref.h"
#include "project/pairs.h"

TEST(env_pair_parse)
{
	struct msb_err err = {0};
	struct msb_env_pair p;
	CHECK_INT(msb_env_pair_parse("VAR=VALUE", &p, &err), ==, 0);
	CHECK_STR(p.name, "VAR");
	CHECK_STR(p.value, "VALUE");
	msb_env_pair_clear(&p);
	CHECK_INT(msb_env_pair_parse("VAR=", &p, &err), ==, 0);
	CHECK_STR(p.name, "VAR");
	CHECK_STR(p.value, "");
	msb_env_pair_clear(&p);
	CHECK_INT(msb_env_pair_parse("A=b=c", &p, &err), ==, 0);
	CHECK_STR(p.name, "A");
	CHECK_STR(p.value, "b=c");
	msb_env_pair_clear(&p);
	CHECK_INT(msb_env_pair_parse("VAR", &p, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK(strstr(err.msg, "NAME=VALUE") != NULL);
	CHECK_INT(msb_env_pair_parse("=VALUE", &p, &err), ==, -1);
	CHECK_INT(msb_env_pair_parse("", &p, &err), ==, -1);
}

TEST(env_pair_special_characters)
{
	struct msb_err err = {0};
	struct msb_env_pair p;
	CHECK_INT(msb_env_pair_parse("VAR_WITH_UNDERSCORE=VALUE WITH SPACES", &p, &err), ==, 0);
	CHECK_STR(p.name, "VAR_WITH_UNDERSCORE");
	CHECK_STR(p.value, "VALUE WITH SPACES");
	msb_env_pair_clear(&p);
	CHECK_INT(msb_env_pair_parse("VAR.WITH.DOTS=VALUE_WITH_UNDERSCORE", &p, &err), ==, 0);
	CHECK_STR(p.name, "VAR.WITH.DOTS");
	CHECK_STR(p.value, "VALUE_WITH_UNDERSCORE");
	msb_env_pair_clear(&p);
}

TEST(path_pair_parse)
{
	struct msb_err err = {0};
	struct msb_path_pair p;
	CHECK_INT(msb_path_pair_parse("/data", &p, &err), ==, 0);
	CHECK_STR(p.host, "/data");
	CHECK_STR(p.guest, "/data");
	msb_path_pair_clear(&p);
	CHECK_INT(msb_path_pair_parse("/data:/data", &p, &err), ==, 0);
	CHECK_STR(p.host, "/data");
	CHECK_STR(p.guest, "/data");
	msb_path_pair_clear(&p);
	CHECK_INT(msb_path_pair_parse("/host/data:/container/data", &p, &err), ==, 0);
	CHECK_STR(p.host, "/host/data");
	CHECK_STR(p.guest, "/container/data");
	msb_path_pair_clear(&p);
	const char *bad[] = {"", ":", ":/data", "/data:", "./data", "./x:rel/guest"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++) {
		CHECK_INT(msb_path_pair_parse(bad[i], &p, &err), ==, -1);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	}
}

TEST(path_pair_resolve_relative)
{
	struct msb_err err = {0};
	struct msb_path_pair p;
	CHECK_INT(msb_path_pair_parse("./src:/app/src", &p, &err), ==, 0);
	CHECK_INT(msb_path_pair_resolve(&p, "/proj", &err), ==, 0);
	CHECK_STR(p.host_abs, "/proj/src");
	msb_path_pair_clear(&p);
	CHECK_INT(msb_path_pair_parse("data/x:/x", &p, &err), ==, 0);
	CHECK_INT(msb_path_pair_resolve(&p, "/proj", &err), ==, 0);
	CHECK_STR(p.host_abs, "/proj/data/x");
	msb_path_pair_clear(&p);
	CHECK_INT(msb_path_pair_parse(".:/w", &p, &err), ==, 0);
	CHECK_INT(msb_path_pair_resolve(&p, "/proj", &err), ==, 0);
	CHECK_STR(p.host_abs, "/proj");
	msb_path_pair_clear(&p);
	CHECK_INT(msb_path_pair_parse("/abs:/w", &p, &err), ==, 0);
	CHECK_INT(msb_path_pair_resolve(&p, "/proj", &err), ==, 0);
	CHECK_STR(p.host_abs, "/abs");
	msb_path_pair_clear(&p);
}

TEST(port_pair_parse)
{
	struct msb_err err = {0};
	struct msb_port_pair p;
	CHECK_INT(msb_port_pair_parse("8080", &p, &err), ==, 0);
	CHECK_INT(p.host, ==, 8080);
	CHECK_INT(p.guest, ==, 8080);
	CHECK_INT(msb_port_pair_parse("8080:8080", &p, &err), ==, 0);
	CHECK_INT(p.host, ==, 8080);
	CHECK_INT(p.guest, ==, 8080);
	CHECK_INT(msb_port_pair_parse("8080:80", &p, &err), ==, 0);
	CHECK_INT(p.host, ==, 8080);
	CHECK_INT(p.guest, ==, 80);
	CHECK_INT(msb_port_pair_parse("65535:0", &p, &err), ==, 0);
	CHECK_INT(p.host, ==, 65535);
	const char *bad[] = {"",	   ":80",     "80:",  "invalid",  "invalid:80",
			     "80:invalid", "65536",   "-1",   "80:80:80", " 80",
			     "1000000",	   "99999:1", "8o:80"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++) {
		if (msb_port_pair_parse(bad[i], &p, &err) != -1)
			TEST_FAIL("'%s' was accepted", bad[i]);
		CHECK(strstr(err.msg, "HOST_PORT:GUEST_PORT") != NULL);
	}
}

TEST(path_segment)
{
	const char *good[] = {"example",   "file.txt",	"file-name", "file_name",
			      "file name", "file:name", "file*name", "file?name"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(good); i++)
		if (!msb_path_segment_valid(good[i]))
			TEST_FAIL("'%s' refused", good[i]);
	const char *bad[] = {"", ".", "..", "/", "///", "file/name", "name/", "/name"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++)
		if (msb_path_segment_valid(bad[i]))
			TEST_FAIL("'%s' accepted", bad[i]);
}

TEST(sandbox_name_rule)
{
	CHECK(msb_sandbox_name_valid("a"));
	CHECK(msb_sandbox_name_valid("web-1_x"));
	CHECK(msb_sandbox_name_valid("9lives"));
	char n63[64], n64[65];
	memset(n63, 'a', 63);
	n63[63] = '\0';
	memset(n64, 'a', 64);
	n64[64] = '\0';
	CHECK(msb_sandbox_name_valid(n63));
	CHECK(!msb_sandbox_name_valid(n64));
	CHECK(!msb_sandbox_name_valid(""));
	CHECK(!msb_sandbox_name_valid("-a"));
	CHECK(!msb_sandbox_name_valid("_a"));
	CHECK(!msb_sandbox_name_valid("a.b"));
	CHECK(!msb_sandbox_name_valid("a b"));
	CHECK(!msb_sandbox_name_valid("a~b"));
	CHECK(!msb_sandbox_name_valid("é"));
}

TEST(reference_or_path)
{
	const char *paths[] = {"./path/to/file", "./single",	      ".",    "./path.with.dots",
			       "/absolute/path", "/path-with-dashes", "/root"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(paths); i++)
		if (!msb_image_is_path(paths[i]))
			TEST_FAIL("'%s' is not a path", paths[i]);
	struct msb_err err = {0};
	const char *refs[] = {
		"alpine:latest",
		"ubuntu:20.04",
		"postgres:13-alpine",
		"docker.io/library/alpine:latest",
		"registry.example.com/myapp:v1.0",
		"ghcr.io/owner/repo:tag",
		"k8s.gcr.io/pause:3.2",
		"localhost:5000/myapp:latest",
		"192.168.1.1:5000/image:tag",
		"alpine@sha256:deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
		"registry.example.com/myapp:v1.0@sha256:"
		"deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
		"python",
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(refs); i++) {
		if (msb_image_is_path(refs[i]))
			TEST_FAIL("'%s' taken for a path", refs[i]);
		if (msb_image_ref_check(refs[i], &err) != 0)
			TEST_FAIL("'%s' refused: %s", refs[i], err.msg);
	}
	const char *bad[] = {"",
			     "invalid!reference:format",
			     "a b",
			     "x@",
			     "x@sha256:XYZ",
			     "a@b@c",
			     "name:",
			     "a//b",
			     "-x"};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(bad); i++) {
		if (msb_image_ref_check(bad[i], &err) != -1)
			TEST_FAIL("'%s' accepted", bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	}
}

TEST(reference_display_is_the_stores)
{
	/* Upstream's display test: the normalised form comes from the store's parser. */
	const char *cases[][2] = {
		{"alpine:latest", "docker.io/library/alpine:latest"},
		{"registry.example.com/app:v1.0", "registry.example.com/app:v1.0"},
		{"ubuntu", "docker.io/library/ubuntu:latest"},
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(cases); i++) {
		struct msb_err err = {0};
		struct oci_ref r;
		char buf[OCI_REF_STR_MAX];
		CHECK_INT(msb_image_ref_check(cases[i][0], &err), ==, 0);
		CHECK_INT(oci_ref_parse(cases[i][0], &r, &err), ==, 0);
		CHECK_INT(oci_ref_format(&r, buf, sizeof(buf)), ==, 0);
		CHECK_STR(buf, cases[i][1]);
	}
}

TEST(scope_names)
{
	enum msb_scope s;
	CHECK_INT(msb_scope_parse("none", false, &s), ==, 0);
	CHECK_INT(s, ==, MSB_SCOPE_NONE);
	CHECK_INT(msb_scope_parse("any", false, &s), ==, 0);
	CHECK_INT(s, ==, MSB_SCOPE_ANY);
	CHECK_INT(msb_scope_parse("Public", false, &s), ==, -1);
	CHECK_INT(msb_scope_parse("Public", true, &s), ==, 0);
	CHECK_INT(s, ==, MSB_SCOPE_PUBLIC);
	CHECK_INT(msb_scope_parse("local", true, &s), ==, -1);
	CHECK_STR(msb_scope_name(MSB_SCOPE_GROUP), "group");
}

TEST(semver)
{
	CHECK(msb_semver_valid("1.0.0"));
	CHECK(msb_semver_valid("0.2.6-rc.1+build.5"));
	CHECK(!msb_semver_valid("invalid"));
	CHECK(!msb_semver_valid("1.0"));
	CHECK(!msb_semver_valid("01.0.0"));
	CHECK(!msb_semver_valid("1.0.0-"));
	CHECK(!msb_semver_valid("1.0.0 "));
}

TEST(guest_overlap)
{
	CHECK(msb_guest_paths_overlap("/data", "/data"));
	CHECK(msb_guest_paths_overlap("/data", "/data/x"));
	CHECK(msb_guest_paths_overlap("/data/x/", "/data"));
	CHECK(msb_guest_paths_overlap("/", "/anything"));
	CHECK(!msb_guest_paths_overlap("/data", "/database"));
	CHECK(!msb_guest_paths_overlap("/a/b", "/a/c"));
}

TEST(name_script_split)
{
	struct msb_err err = {0};
	char *n, *s;
	CHECK_INT(msb_name_script_split("web~test", &n, &s, &err), ==, 0);
	CHECK_STR(n, "web");
	CHECK_STR(s, "test");
	free(n);
	free(s);
	CHECK_INT(msb_name_script_split("web", &n, &s, &err), ==, 0);
	CHECK_STR(n, "web");
	CHECK(s == NULL);
	free(n);
	CHECK_INT(msb_name_script_split("web~", &n, &s, &err), ==, -1);
	CHECK_INT(msb_name_script_split("~x", &n, &s, &err), ==, -1);
}

TEST_MAIN(T(env_pair_parse), T(env_pair_special_characters), T(path_pair_parse),
	  T(path_pair_resolve_relative), T(port_pair_parse), T(path_segment), T(sandbox_name_rule),
	  T(reference_or_path), T(reference_display_is_the_stores), T(scope_names), T(semver),
	  T(guest_overlap), T(name_script_split))
