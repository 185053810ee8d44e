#include "tests/unit/test.h"
#include "oci/manifest.h"

#define H(c)                                                                                      \
	"sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
		c c c c c c c c c c c c c c c c c c c c c c c c
#define DA H("a")
#define DB H("b")
#define DC H("c")

static int parse_m(const char *s, struct oci_manifest *m, struct msb_err *err)
{
	return oci_manifest_parse(s, strlen(s), m, err);
}

TEST(oci_manifest_layers_in_order)
{
	const char *j = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\","
			"\"config\":{\"mediaType\":\"" OCI_MT_OCI_CONFIG "\",\"digest\":\"" DA
			"\",\"size\":10},"
			"\"layers\":[{\"mediaType\":\"" OCI_MT_OCI_LAYER_GZIP "\",\"digest\":\"" DB
			"\",\"size\":20},{\"mediaType\":\"" OCI_MT_OCI_LAYER_ZSTD
			"\",\"digest\":\"" DC "\",\"size\":30}]}";
	struct oci_manifest m;
	struct msb_err err = {0};
	CHECK_INT(parse_m(j, &m, &err), ==, 0);
	CHECK_STR(m.config.digest, DA);
	CHECK_INT(m.n_layers, ==, 2);
	CHECK_STR(m.layers[0].digest, DB);
	CHECK_INT(m.layers[1].size, ==, 30);
	CHECK_STR(m.layers[1].media_type, OCI_MT_OCI_LAYER_ZSTD);
	oci_manifest_release(&m);
}

TEST(docker_v2_manifest)
{
	const char *j = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_MANIFEST "\","
			"\"config\":{\"mediaType\":\"" OCI_MT_DOCKER_CONFIG "\",\"digest\":\"" DA
			"\",\"size\":10},"
			"\"layers\":[{\"mediaType\":\"" OCI_MT_DOCKER_LAYER "\",\"digest\":\"" DB
			"\",\"size\":20}]}";
	struct oci_manifest m;
	struct msb_err err = {0};
	CHECK_INT(parse_m(j, &m, &err), ==, 0);
	CHECK_INT(m.n_layers, ==, 1);
	oci_manifest_release(&m);
	enum oci_doc_kind k;
	CHECK_INT(oci_doc_kind(NULL, j, strlen(j), &k, &err), ==, 0);
	CHECK_INT(k, ==, OCI_DOC_MANIFEST);
}

TEST(hostile_manifests_are_refused)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{",
		"{\"schemaVersion\":1,\"layers\":[]}",
		"{\"schemaVersion\":\"2\"}",
		"{\"schemaVersion\":2}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1}}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA
		"\",\"size\":-1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA
		"\",\"size\":1.5},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"md5:00\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA
		"\",\"size\":1},\"layers\":[1]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":"
		"[{\"mediaType\":\"application/vnd.cncf.helm.chart.content.v1.tar+gzip\","
		"\"digest\":\"" DB "\",\"size\":1}]}",
		"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/"
		"vnd.cncf.helm.config\","
		"\"digest\":\"" DA "\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"schemaVersion\":2,\"config\":{\"digest\":\"" DA
		"\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:../../etc/"
		"passwd\",\"size\":1},"
		"\"layers\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_manifest m;
		struct msb_err err = {0};
		if (parse_m(bad[i], &m, &err) == 0)
			TEST_FAIL("manifest %zu accepted: %s", i, bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	}
	/* A NUL inside the JSON text is refused, not truncated. */
	const char nul[] = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},"
			   "\"layers\":[]}\0garbage";
	struct oci_manifest m;
	struct msb_err err = {0};
	CHECK_INT(oci_manifest_parse(nul, sizeof(nul) - 1, &m, &err), ==, -1);
}

static const char *index_json =
	"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_OCI_INDEX "\",\"manifests\":["
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":1,"
	"\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"},\"annotations\":"
	"{\"vnd.docker.reference.type\":\"attestation-manifest\"}},"
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DB "\",\"size\":2,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DC "\",\"size\":3,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
	"{\"mediaType\":\"" OCI_MT_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":4,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"},\"annotations\":"
	"{\"vnd.docker.reference.type\":\"attestation-manifest\"}}]}";

TEST(index_selects_linux_amd64_skipping_attestations)
{
	struct oci_index idx;
	struct msb_err err = {0};
	CHECK_INT(oci_index_parse(index_json, strlen(index_json), &idx, &err), ==, 0);
	CHECK_INT(idx.n, ==, 4);
	CHECK(idx.manifests[0].attestation);
	const struct oci_descriptor *d = oci_index_select(&idx, "linux", "amd64", NULL, &err);
	CHECK(d != NULL);
	CHECK_STR(d->digest, DC);
	d = oci_index_select(&idx, "linux", "arm64", NULL, &err);
	CHECK(d && strcmp(d->digest, DB) == 0);
	d = oci_index_select(&idx, "linux", "riscv64", NULL, &err);
	CHECK(d == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "linux/arm64/v8") != NULL);
	CHECK(strstr(err.msg, "unknown") == NULL); /* attestations are not offered */
	enum oci_doc_kind k;
	CHECK_INT(oci_doc_kind(NULL, index_json, strlen(index_json), &k, &err), ==, 0);
	CHECK_INT(k, ==, OCI_DOC_INDEX);
	oci_index_release(&idx);
}

TEST(index_with_only_attestations_has_no_platform)
{
	const char *j = "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" DA "\",\"size\":1,"
			"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"},"
			"\"annotations\":{\"vnd.docker.reference.type\":\"x\"}}]}";
	struct oci_index idx;
	struct msb_err err = {0};
	CHECK_INT(oci_index_parse(j, strlen(j), &idx, &err), ==, 0);
	CHECK(oci_index_select(&idx, "linux", "amd64", NULL, &err) == NULL);
	oci_index_release(&idx);
}

TEST(doc_kind_by_content_type_and_schema1)
{
	struct msb_err err = {0};
	enum oci_doc_kind k;
	const char *j = "{\"schemaVersion\":2,\"manifests\":[]}";
	CHECK_INT(oci_doc_kind(OCI_MT_DOCKER_LIST "; charset=utf-8", j, strlen(j), &k, &err), ==,
		  0);
	CHECK_INT(k, ==, OCI_DOC_INDEX);
	const char *s1 = "{\"schemaVersion\":1,\"fsLayers\":[]}";
	CHECK_INT(oci_doc_kind("application/vnd.docker.distribution.manifest.v1+prettyjws", s1,
			       strlen(s1), &k, &err),
		  ==, -1);
	CHECK(strstr(err.msg, "schema 1") != NULL);
}

TEST(config_fields)
{
	const char *j = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
			"\"Env\":[\"PATH=/usr/bin\",\"LANG=C.UTF-8\"],\"Cmd\":[\"python3\"],"
			"\"Entrypoint\":null,\"WorkingDir\":\"/app\",\"User\":\"1000:1000\","
			"\"ExposedPorts\":{\"80/tcp\":{},\"53/udp\":{}}},"
			"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\"]}}";
	struct oci_image_config c;
	struct msb_err err = {0};
	CHECK_INT(oci_config_parse(j, strlen(j), &c, &err), ==, 0);
	CHECK_INT(oci_strv_len(c.env), ==, 2);
	CHECK_STR(c.env[1], "LANG=C.UTF-8");
	CHECK_STR(c.cmd[0], "python3");
	CHECK(c.cmd[1] == NULL);
	CHECK(c.entrypoint == NULL);
	CHECK_STR(c.working_dir, "/app");
	CHECK_STR(c.user, "1000:1000");
	CHECK_INT(oci_strv_len(c.exposed_ports), ==, 2);
	CHECK_STR(c.os, "linux");
	CHECK_INT(c.n_diff_ids, ==, 1);
	oci_config_release(&c);
	/* An empty config is fine: no env, no command. */
	CHECK_INT(oci_config_parse("{}", 2, &c, &err), ==, 0);
	CHECK(c.env && c.env[0] == NULL);
	CHECK(c.cmd == NULL);
	oci_config_release(&c);
}

TEST(hostile_configs_are_refused)
{
	static const char *const bad[] = {
		"{\"config\":[]}",
		"{\"config\":{\"Env\":\"PATH=/bin\"}}",
		"{\"config\":{\"Env\":[1]}}",
		"{\"config\":{\"Cmd\":[\"a\",null]}}",
		"{\"config\":{\"WorkingDir\":5}}",
		"{\"config\":{\"ExposedPorts\":[\"80\"]}}",
		"{\"config\":{\"Env\":[\"A=\\u0000B\"]}}",
		"{\"os\":[]}",
		"{\"rootfs\":{\"diff_ids\":{}}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_image_config c;
		struct msb_err err = {0};
		if (oci_config_parse(bad[i], strlen(bad[i]), &c, &err) == 0)
			TEST_FAIL("config %zu accepted: %s", i, bad[i]);
		CHECK_INT(err.kind, ==, MSB_EK_CORRUPT);
	}
}

TEST_MAIN(T(oci_manifest_layers_in_order), T(docker_v2_manifest), T(hostile_manifests_are_refused),
	  T(index_selects_linux_amd64_skipping_attestations),
	  T(index_with_only_attestations_has_no_platform), T(doc_kind_by_content_type_and_schema1),
	  T(config_fields), T(hostile_configs_are_refused))
