#include "tests/unit/test.h"
#include "oci/ref.h"

static const char *norm(const char *in, char *buf, size_t len)
{
	struct oci_ref r;
	struct msb_err err = {0};
	if (oci_ref_parse(in, &r, &err) < 0)
		return NULL;
	if (oci_ref_format(&r, buf, len) < 0)
		return NULL;
	return buf;
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

TEST(docker_hub_short_names)
{
	char b[OCI_REF_STR_MAX];
	CHECK_STR(norm("python", b, sizeof(b)), "docker.io/library/python:latest");
	CHECK_STR(norm("python:3.12-slim", b, sizeof(b)), "docker.io/library/python:3.12-slim");
	CHECK_STR(norm("user/img", b, sizeof(b)), "docker.io/user/img:latest");
	CHECK_STR(norm("docker.io/python", b, sizeof(b)), "docker.io/library/python:latest");
	CHECK_STR(norm("index.docker.io/library/node:20", b, sizeof(b)),
		  "docker.io/library/node:20");
	CHECK_STR(norm("microsandbox/python", b, sizeof(b)),
		  "docker.io/microsandbox/python:latest");
}

TEST(registries_ports_and_paths)
{
	char b[OCI_REF_STR_MAX];
	CHECK_STR(norm("localhost:5000/ns/img:tag", b, sizeof(b)), "localhost:5000/ns/img:tag");
	CHECK_STR(norm("localhost/img", b, sizeof(b)), "localhost/img:latest");
	CHECK_STR(norm("ghcr.io/org/app", b, sizeof(b)), "ghcr.io/org/app:latest");
	CHECK_STR(norm("127.0.0.1:5000/a/b/c:v1.0", b, sizeof(b)), "127.0.0.1:5000/a/b/c:v1.0");
	CHECK_STR(norm("[::1]:5000/img", b, sizeof(b)), "[::1]:5000/img:latest");
	CHECK_STR(norm("my-reg1.example.com/a__b/c-d.e", b, sizeof(b)),
		  "my-reg1.example.com/a__b/c-d.e:latest");
}

TEST(digests_and_tag_plus_digest)
{
	char b[OCI_REF_STR_MAX];
	CHECK_STR(norm("python@sha256:" H64, b, sizeof(b)), "docker.io/library/python@sha256:" H64);
	CHECK_STR(norm("python:3@sha256:" H64, b, sizeof(b)),
		  "docker.io/library/python:3@sha256:" H64);
	struct oci_ref r;
	struct msb_err err = {0};
	CHECK_INT(oci_ref_parse("ghcr.io/org/app:v1@sha256:" H64, &r, &err), ==, 0);
	CHECK_STR(r.registry, "ghcr.io");
	CHECK_STR(r.repository, "org/app");
	CHECK_STR(r.tag, "v1");
	CHECK_STR(oci_ref_target(&r), "sha256:" H64);
	CHECK_INT(oci_ref_parse("localhost:5000/img", &r, &err), ==, 0);
	CHECK_STR(oci_ref_target(&r), "latest");
}

TEST(bad_references_are_refused_with_reasons)
{
	static const char *const bad[] = {
		"",
		"Python",
		"user/Img",
		"img:",
		"img:-tag",
		"img@sha256:abc",
		"img@sha256:" H64 "0",
		"img@md5:0123",
		"img@sha512:" H64 H64,
		"a//b",
		"/img",
		"img/",
		"img..x",
		"img_-x",
		"has space",
		"host:port:x/img",
		"host:99999999/img",
		"-host.com/img",
		"img:"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_ref r;
		struct msb_err err = {0};
		if (oci_ref_parse(bad[i], &r, &err) == 0)
			TEST_FAIL("'%s' was accepted", bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_USAGE);
		CHECK(err.msg[0] != '\0');
	}
	struct oci_ref r;
	struct msb_err err = {0};
	oci_ref_parse("user/Img", &r, &err);
	CHECK(strstr(err.msg, "lower-case") != NULL);
	oci_ref_parse("img@sha512:" H64 H64, &r, &err);
	CHECK(strstr(err.msg, "only sha256") != NULL);
}

TEST(upper_case_first_component_is_a_host)
{
	/* Docker's rule: an upper-case first component can only be a registry host. */
	char b[OCI_REF_STR_MAX];
	CHECK_STR(norm("MyHost/img", b, sizeof(b)), "MyHost/img:latest");
}

TEST(name_length_is_bounded)
{
	char name[300];
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	struct oci_ref r;
	struct msb_err err = {0};
	CHECK_INT(oci_ref_parse(name, &r, &err), ==, -1);
}

TEST(loopback_registries)
{
	CHECK(oci_registry_is_loopback("localhost:5000"));
	CHECK(oci_registry_is_loopback("127.0.0.1:5000"));
	CHECK(oci_registry_is_loopback("127.0.0.2"));
	CHECK(oci_registry_is_loopback("[::1]:80"));
	CHECK(!oci_registry_is_loopback("docker.io"));
	CHECK(!oci_registry_is_loopback("127.0.0.1.evil.com"));
	CHECK(!oci_registry_is_loopback("localhost.evil.com"));
}

TEST(digest_validation)
{
	CHECK(oci_digest_valid("sha256:" H64));
	CHECK(!oci_digest_valid("sha256:" H64 "00"));
	CHECK(!oci_digest_valid(
		"sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	CHECK(!oci_digest_valid("sha512:" H64));
}

TEST_MAIN(T(docker_hub_short_names), T(registries_ports_and_paths), T(digests_and_tag_plus_digest),
	  T(bad_references_are_refused_with_reasons), T(upper_case_first_component_is_a_host),
	  T(name_length_is_bounded), T(loopback_registries), T(digest_validation))
