#include "tests/unit/test.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci/digest.h"
#include "oci/import.h"
#include "oci/manifest.h"
#include "oci/pull.h"
#include "oci/registry.h"
#include "oci/settings.h"
#include "oci/store.h"
#include "oci/tar.h"

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
	return remove(p);
}

static void rm_rf(const char *d)
{
	nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

TEST(challenge_parsing)
{
	struct oci_challenge c;
	CHECK_INT(
		oci_parse_challenge("Bearer realm=\"https://auth.docker.io/token\",service=\""
				    "registry.docker.io\",scope=\"repository:library/python:pull\"",
				    &c),
		==, 0);
	CHECK_STR(c.scheme, "Bearer");
	CHECK_STR(c.realm, "https://auth.docker.io/token");
	CHECK_STR(c.service, "registry.docker.io");
	CHECK_STR(c.scope, "repository:library/python:pull");
	CHECK_INT(oci_parse_challenge("Basic realm=x", &c), ==, 0);
	CHECK_STR(c.scheme, "Basic");
	CHECK_STR(c.realm, "x");
	CHECK_INT(oci_parse_challenge("bearer  REALM=\"a\\\"b\" , scope=s", &c), ==, 0);
	CHECK_STR(c.realm, "a\"b");
	CHECK_STR(c.scope, "s");
	CHECK_INT(oci_parse_challenge("", &c), ==, -1);
	CHECK_INT(oci_parse_challenge("Bearer realm=\"unterminated", &c), ==, -1);
	CHECK_INT(oci_parse_challenge("Bearer realm", &c), ==, -1);
	char big[3000] = "Bearer realm=\"";
	memset(big + 14, 'a', 2000);
	strcpy(big + 2014, "\"");
	CHECK_INT(oci_parse_challenge(big, &c), ==, -1);
}

TEST(retry_delays)
{
	struct oci_registry r = {.backoff_ms = 250};
	CHECK_INT(oci_retry_delay(&r, 1, 503, ""), ==, 250);
	CHECK_INT(oci_retry_delay(&r, 3, 500, "5"), ==, 1000); /* only 429/503 */
	CHECK_INT(oci_retry_delay(&r, 1, 429, "2"), ==, 2000);
	CHECK_INT(oci_retry_delay(&r, 4, 503, "1"), ==, 2000); /* never below the backoff */
	CHECK_INT(oci_retry_delay(&r, 1, 429, "100000"), ==, 60000);
	CHECK_INT(oci_retry_delay(&r, 1, 429, "Wed, 21 Oct 2015 07:28:00 GMT"), ==, 250);
	CHECK_INT(oci_retry_delay(&r, 1, 429, "-3"), ==, 250);
}

TEST(tar_names)
{
	char out[64];
	CHECK_INT(oci_tar_clean_name("./a//b/./c", 10, out, sizeof(out)), ==, 0);
	CHECK_STR(out, "a/b/c");
	CHECK_INT(oci_tar_clean_name("blobs/sha256/", 13, out, sizeof(out)), ==, 0);
	CHECK_STR(out, "blobs/sha256");
	CHECK_INT(oci_tar_clean_name("../x", 4, out, sizeof(out)), ==, -1);
	CHECK_INT(oci_tar_clean_name("a/../../x", 9, out, sizeof(out)), ==, -1);
	CHECK_INT(oci_tar_clean_name("/etc/passwd", 11, out, sizeof(out)), ==, -1);
	CHECK_INT(oci_tar_clean_name("./", 2, out, sizeof(out)), ==, -1);
	CHECK_INT(oci_tar_clean_name("a\0b", 3, out, sizeof(out)), ==, -1);
	char long_name[100];
	memset(long_name, 'a', sizeof(long_name));
	CHECK_INT(oci_tar_clean_name(long_name, sizeof(long_name), out, sizeof(out)), ==, -1);
}

TEST(settings_and_credentials)
{
	char home[] = "/tmp/msb-test-oci-XXXXXX";
	CHECK(mkdtemp(home) != NULL);
	char p[256];
	snprintf(p, sizeof(p), "%s/config.json", home);
	write_file(p, "{\"registry-mirrors\":[\"http://127.0.0.1:5000/\"],"
		      "\"insecure-registries\":[\"reg.lan:5000\"],\"max-concurrent-downloads\":2}");
	struct oci_settings s;
	struct msb_err err = {0};
	CHECK_INT(oci_settings_load(&s, home, &err), ==, 0);
	CHECK_STR(s.mirrors[0], "http://127.0.0.1:5000");
	CHECK_INT(s.max_concurrent, ==, 2);
	CHECK(oci_settings_insecure(&s, "reg.lan:5000"));
	CHECK(oci_settings_insecure(&s, "localhost:5000"));
	CHECK(!oci_settings_insecure(&s, "ghcr.io"));
	/* Endpoints: mirrors then Docker Hub; HTTPS then HTTP for insecure; HTTPS otherwise. */
	struct oci_ref ref;
	struct oci_registry r;
	CHECK_INT(oci_ref_parse("python", &ref, &err), ==, 0);
	CHECK_INT(oci_registry_open(&r, &s, &ref, &err), ==, 0);
	CHECK_INT(oci_strv_len(r.endpoints), ==, 2);
	CHECK_STR(r.endpoints[0], "http://127.0.0.1:5000");
	CHECK_STR(r.endpoints[1], "https://registry-1.docker.io");
	oci_registry_close(&r);
	CHECK_INT(oci_ref_parse("reg.lan:5000/a/b", &ref, &err), ==, 0);
	CHECK_INT(oci_registry_open(&r, &s, &ref, &err), ==, 0);
	CHECK_INT(oci_strv_len(r.endpoints), ==, 2);
	CHECK_STR(r.endpoints[0], "https://reg.lan:5000");
	CHECK_STR(r.endpoints[1], "http://reg.lan:5000");
	CHECK_INT(r.noverify, ==, 1);
	oci_registry_close(&r);
	CHECK_INT(oci_ref_parse("ghcr.io/a/b", &ref, &err), ==, 0);
	CHECK_INT(oci_registry_open(&r, &s, &ref, &err), ==, 0);
	CHECK_INT(oci_strv_len(r.endpoints), ==, 1);
	CHECK_STR(r.endpoints[0], "https://ghcr.io");
	oci_registry_close(&r);
	/* msb login's file, mode 0600; docker.io's odd key spellings all match. */
	CHECK_INT(oci_creds_store(home, "https://index.docker.io/v1/", "bob", "p:w", &err), ==, 0);
	snprintf(p, sizeof(p), "%s/auth.json", home);
	struct stat st;
	CHECK_INT(stat(p, &st), ==, 0);
	CHECK_INT(st.st_mode & 0777, ==, 0600);
	char *u = NULL, *pw = NULL;
	CHECK_INT(oci_creds_lookup(&s, "docker.io", &u, &pw, &err), ==, 1);
	CHECK_STR(u, "bob");
	CHECK_STR(pw, "p:w");
	free(u);
	free(pw);
	CHECK_INT(oci_creds_lookup(&s, "ghcr.io", &u, &pw, &err), ==, 0);
	CHECK_INT(oci_creds_remove(home, "docker.io", &err), ==, 0);
	CHECK_INT(oci_creds_remove(home, "docker.io", &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	oci_settings_release(&s);
	/* A malformed settings file is a usage error naming the file. */
	snprintf(p, sizeof(p), "%s/config.json", home);
	write_file(p, "{\"registry-mirrors\": 5}");
	CHECK_INT(oci_settings_load(&s, home, &err), ==, -1);
	CHECK(strstr(err.msg, "config.json") != NULL);
	rm_rf(home);
}

/* A stored image is used without any registry: the reference names an address where
 * nothing listens, and ensure still succeeds. */
TEST(stored_image_is_used_offline)
{
	char home[] = "/tmp/msb-test-oci-XXXXXX";
	CHECK(mkdtemp(home) != NULL);
	struct oci_store *st = NULL;
	struct msb_err err = {0};
	CHECK_INT(oci_store_open(home, &st, &err), ==, 0);
	const char *cfg =
		"{\"os\":\"linux\",\"architecture\":\"amd64\",\"config\":{\"Env\":"
		"[\"A=1\"],\"Cmd\":[\"sh\"],\"WorkingDir\":\"/w\"},\"rootfs\":{\"diff_ids\":"
		"[\"sha256:" H64 "\"]}}";
	char cd[OCI_DIGEST_MAX + 1];
	oci_sha256_buf(cfg, strlen(cfg), cd);
	struct oci_descriptor layer = {
		.media_type = OCI_MT_OCI_LAYER_GZIP, .digest = "sha256:" H64, .size = 42};
	char rootfs[4400];
	oci_store_rootfs_path(st, "sha256:" H64, rootfs, sizeof(rootfs));
	write_file(rootfs, "image");
	struct oci_image_record rec = {.reference = "127.0.0.1:1/x/y:latest",
				       .manifest_digest = "sha256:" H64,
				       .media_type = OCI_MT_OCI_MANIFEST,
				       .config_digest = cd,
				       .config_json = cfg,
				       .config_len = strlen(cfg),
				       .layers = &layer,
				       .n_layers = 1,
				       .rootfs_path = rootfs,
				       .rootfs_format = "ext4"};
	CHECK_INT(oci_store_commit(st, &rec, &err), ==, 0);
	struct oci_image *img = NULL;
	CHECK_INT(oci_image_ensure(st, "127.0.0.1:1/x/y", NULL, &img, &err), ==, 0);
	CHECK_STR(img->reference, "127.0.0.1:1/x/y:latest");
	CHECK_STR(img->rootfs_path, rootfs);
	CHECK_STR(img->config.env[0], "A=1");
	CHECK_STR(img->config.cmd[0], "sh");
	CHECK_STR(img->config.working_dir, "/w");
	CHECK_INT(img->n_layers, ==, 1);
	CHECK_INT(img->layers[0].size, ==, 42);
	oci_image_free(img);
	/* By digest prefix, too. */
	CHECK_INT(oci_store_get(st, "0123456789ab", &img, &err), ==, 0);
	oci_image_free(img);
	/* A missing root filesystem image makes the record unusable, not half-usable. */
	unlink(rootfs);
	CHECK_INT(oci_store_get(st, "127.0.0.1:1/x/y", &img, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	/* And ensure then tries the (absent) registry: a network error. */
	CHECK_INT(oci_image_ensure(st, "127.0.0.1:1/x/y", NULL, &img, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NETWORK);
	CHECK_INT(oci_store_remove(st, "127.0.0.1:1/x/y", &err), ==, 0);
	struct oci_image **v = NULL;
	size_t n = 9;
	CHECK_INT(oci_store_list(st, &v, &n, &err), ==, 0);
	CHECK_INT(n, ==, 0);
	oci_image_list_free(v, n);
	oci_store_close(st);
	rm_rf(home);
}

/* image: ./dir — only when rootfs_build_from_dir works here (needs its tools). */
TEST(image_from_a_directory_is_cached_by_its_tree)
{
	char home[] = "/tmp/msb-test-oci-XXXXXX";
	CHECK(mkdtemp(home) != NULL);
	char dir[300], p[400];
	snprintf(dir, sizeof(dir), "%s/root", home);
	CHECK_INT(mkdir(dir, 0755), ==, 0);
	snprintf(p, sizeof(p), "%s/hello", dir);
	write_file(p, "hi\n");
	struct oci_store *st = NULL;
	struct msb_err err = {0};
	CHECK_INT(oci_store_open(home, &st, &err), ==, 0);
	struct oci_image *a = NULL, *b = NULL;
	if (oci_image_from_dir(st, dir, &a, &err) < 0) {
		oci_store_close(st);
		rm_rf(home);
		TEST_SKIP("rootfs_build_from_dir failed here: %s", err.msg);
	}
	CHECK(strncmp(a->reference, "localhost/dir-", 14) == 0);
	struct stat s1, s2;
	CHECK_INT(stat(a->rootfs_path, &s1), ==, 0);
	CHECK_INT(oci_image_from_dir(st, dir, &b, &err), ==, 0);
	CHECK_STR(a->manifest_digest, b->manifest_digest);
	CHECK_INT(stat(b->rootfs_path, &s2), ==, 0);
	CHECK_INT(s1.st_mtim.tv_sec, ==, s2.st_mtim.tv_sec); /* not rebuilt */
	CHECK_INT(s1.st_mtim.tv_nsec, ==, s2.st_mtim.tv_nsec);
	oci_image_free(b);
	write_file(p, "changed\n");
	CHECK_INT(oci_image_from_dir(st, dir, &b, &err), ==, 0);
	CHECK_STR(a->reference, b->reference);
	CHECK(strcmp(a->manifest_digest, b->manifest_digest) != 0);
	oci_image_free(a);
	oci_image_free(b);
	CHECK_INT(oci_image_from_dir(st, "/nonexistent/dir", &a, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	oci_store_close(st);
	rm_rf(home);
}

TEST_MAIN(T(challenge_parsing), T(retry_delays), T(tar_names), T(settings_and_credentials),
	  T(stored_image_is_used_offline), T(image_from_a_directory_is_cached_by_its_tree))
