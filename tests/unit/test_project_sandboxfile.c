/* Upstream's Sandboxfile config tests (core/config), rewritten for the C
 * loader, plus what upstream never checked: positions in errors, types,
 * depends_on, guest path overlap, start order. */
#include "test.h"

#include <unistd.h>

#include "common/cleanup.h"
#include "project/sandboxfile.h"

static struct msb_sandboxfile *load_ok(struct test_ctx *t, const char *yaml)
{
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	if (msb_sandboxfile_parse(yaml, strlen(yaml), "Sandboxfile", "/proj", &sf, &err) != 0)
		TEST_FAIL("refused: %s", err.msg);
	return sf;
}

/* Expect a refusal whose message starts "Sandboxfile:<line>:<col>: " and
 * contains `needle`. */
static void load_bad(struct test_ctx *t, const char *yaml, int line, int col, const char *needle)
{
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	if (msb_sandboxfile_parse(yaml, strlen(yaml), "Sandboxfile", "/proj", &sf, &err) == 0) {
		msb_sandboxfile_free(sf);
		TEST_FAIL("accepted: %s", yaml);
	}
	CHECK(sf == NULL);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	if (line > 0) {
		char pfx[64];
		snprintf(pfx, sizeof(pfx), "Sandboxfile:%d:%d: ", line, col);
		if (strncmp(err.msg, pfx, strlen(pfx)) != 0)
			TEST_FAIL("expected '%s' at the start of: %s", pfx, err.msg);
	}
	if (needle && !strstr(err.msg, needle))
		TEST_FAIL("expected '%s' in: %s", needle, err.msg);
}

TEST(empty_config)
{
	struct msb_sandboxfile *sf = load_ok(t, "\n    # Empty config with no fields\n");
	CHECK(!sf->meta.present);
	CHECK_INT(sf->nmodules, ==, 0);
	CHECK_INT(sf->nbuilds, ==, 0);
	CHECK_INT(sf->nsandboxes, ==, 0);
	msb_sandboxfile_free(sf);
	sf = load_ok(t, "");
	CHECK_INT(sf->nsandboxes, ==, 0);
	msb_sandboxfile_free(sf);
}

TEST(default_config_empty_sections)
{
	struct msb_sandboxfile *sf =
		load_ok(t, "meta: {}\nmodules: {}\nbuilds: {}\nsandboxes: {}\n");
	CHECK(sf->meta.present);
	CHECK(sf->meta.description == NULL);
	CHECK_INT(sf->nmodules, ==, 0);
	CHECK_INT(sf->nbuilds, ==, 0);
	CHECK_INT(sf->nsandboxes, ==, 0);
	msb_sandboxfile_free(sf);
	/* What `msb init` writes: sandboxes with a null value. */
	sf = load_ok(t, "# Sandbox configurations\nsandboxes:\n");
	CHECK_INT(sf->nsandboxes, ==, 0);
	CHECK(sf->has_sandboxes_key);
	msb_sandboxfile_free(sf);
}

TEST(minimal_sandbox)
{
	struct msb_sandboxfile *sf =
		load_ok(t, "sandboxes:\n  test:\n    image: \"alpine:latest\"\n");
	const struct msb_sandbox *sb = msb_sandboxfile_find(sf, "test");
	CHECK(sb != NULL);
	CHECK(sb->version == NULL);
	CHECK_INT(sb->memory_mib, ==, 0);
	CHECK_INT(sb->cpus, ==, 0);
	CHECK_INT(sb->nvolumes, ==, 0);
	CHECK_INT(sb->nports, ==, 0);
	CHECK_INT(sb->nenvs, ==, 0);
	CHECK(sb->workdir == NULL);
	CHECK(sb->shell == NULL);
	CHECK_INT(sb->nscripts, ==, 0);
	CHECK_INT(sb->scope, ==, MSB_SCOPE_PUBLIC);
	CHECK_STR(sb->image, "alpine:latest");
	CHECK(!sb->image_is_path);
	CHECK_INT(sb->line, ==, 2);
	CHECK_INT(sb->column, ==, 3);
	CHECK(msb_sandboxfile_find(sf, "nope") == NULL);
	msb_sandboxfile_free(sf);
}

TEST(basic_config)
{
	const char *y = "meta:\n"
			"  authors:\n"
			"    - \"John Doe <john@example.com>\"\n"
			"  description: \"Test configuration\"\n"
			"  homepage: \"https://example.com\"\n"
			"  repository: \"https://github.com/example/test\"\n"
			"  readme: \"./README.md\"\n"
			"  tags:\n"
			"    - \"test\"\n"
			"    - \"example\"\n"
			"  icon: \"./icon.png\"\n"
			"\n"
			"sandboxes:\n"
			"  test_sandbox:\n"
			"    version: \"1.0.0\"\n"
			"    image: \"alpine:latest\"\n"
			"    memory: 1024\n"
			"    cpus: 2\n"
			"    volumes:\n"
			"      - \"./src:/app/src\"\n"
			"    ports:\n"
			"      - \"8080:80\"\n"
			"    envs:\n"
			"      - \"DEBUG=true\"\n"
			"    workdir: \"/app\"\n"
			"    shell: \"/bin/sh\"\n"
			"    scripts:\n"
			"      start: \"echo 'Hello, World!'\"\n";
	struct msb_sandboxfile *sf = load_ok(t, y);
	CHECK_STR(sf->meta.authors.v[0], "John Doe <john@example.com>");
	CHECK_STR(sf->meta.description, "Test configuration");
	CHECK_STR(sf->meta.homepage, "https://example.com");
	CHECK_STR(sf->meta.repository, "https://github.com/example/test");
	CHECK_STR(sf->meta.readme, "./README.md");
	CHECK_INT(sf->meta.tags.n, ==, 2);
	CHECK_STR(sf->meta.tags.v[1], "example");
	CHECK_STR(sf->meta.icon, "./icon.png");
	const struct msb_sandbox *sb = msb_sandboxfile_find(sf, "test_sandbox");
	CHECK(sb != NULL);
	CHECK_STR(sb->version, "1.0.0");
	CHECK_INT(sb->memory_mib, ==, 1024);
	CHECK_INT(sb->cpus, ==, 2);
	CHECK_INT(sb->nvolumes, ==, 1);
	CHECK_STR(sb->volumes[0].host, "./src");
	CHECK_STR(sb->volumes[0].guest, "/app/src");
	CHECK_STR(sb->volumes[0].host_abs, "/proj/src");
	CHECK_INT(sb->ports[0].host, ==, 8080);
	CHECK_INT(sb->ports[0].guest, ==, 80);
	CHECK_STR(sb->envs[0].name, "DEBUG");
	CHECK_STR(sb->envs[0].value, "true");
	CHECK_STR(sb->workdir, "/app");
	CHECK_STR(sb->shell, "/bin/sh");
	CHECK_STR(msb_sandbox_script(sb, "start"), "echo 'Hello, World!'");
	msb_sandboxfile_free(sf);
}

TEST(full_config)
{
	const char *y = "meta:\n"
			"  description: \"Full test configuration\"\n"
			"modules:\n"
			"  \"./database.yaml\":\n"
			"    database: {}\n"
			"  \"./redis.yaml\":\n"
			"    redis:\n"
			"      as: \"cache\"\n"
			"builds:\n"
			"  base_build:\n"
			"    image: \"python:3.11-slim\"\n"
			"    memory: 2048\n"
			"    cpus: 2\n"
			"    volumes:\n"
			"      - \"./requirements.txt:/build/requirements.txt\"\n"
			"    envs:\n"
			"      - \"PYTHON_VERSION=3.11\"\n"
			"    workdir: \"/build\"\n"
			"    shell: \"/bin/bash\"\n"
			"    steps:\n"
			"      - \"pip install -r requirements.txt\"\n"
			"    imports:\n"
			"      requirements: \"./requirements.txt\"\n"
			"    exports:\n"
			"      packages: \"/build/dist/packages\"\n"
			"sandboxes:\n"
			"  database:\n"
			"    image: postgres\n"
			"  cache:\n"
			"    image: redis\n"
			"  api:\n"
			"    version: \"1.0.0\"\n"
			"    image: \"python:3.11-slim\"\n"
			"    memory: 1024\n"
			"    cpus: 1\n"
			"    volumes:\n"
			"      - \"./api:/app/src\"\n"
			"    ports:\n"
			"      - \"8000:8000\"\n"
			"    envs:\n"
			"      - \"DEBUG=false\"\n"
			"    depends_on:\n"
			"      - \"database\"\n"
			"      - \"cache\"\n"
			"    workdir: \"/app\"\n"
			"    shell: \"/bin/bash\"\n"
			"    scripts:\n"
			"      start: \"python -m uvicorn src.main:app\"\n"
			"    scope: \"public\"\n";
	struct msb_sandboxfile *sf = load_ok(t, y);
	CHECK_INT(sf->nmodules, ==, 2);
	CHECK_STR(sf->modules[0].path, "./database.yaml");
	CHECK_STR(sf->modules[1].path, "./redis.yaml");
	CHECK_STR(sf->modules[1].components[0].key, "redis");
	CHECK_STR(sf->modules[1].components[0].value, "cache");
	CHECK_INT(sf->nbuilds, ==, 1);
	const struct msb_sandbox *b = &sf->builds[0];
	CHECK_INT(b->memory_mib, ==, 2048);
	CHECK_INT(b->cpus, ==, 2);
	CHECK_STR(b->workdir, "/build");
	CHECK_STR(b->shell, "/bin/bash");
	CHECK_STR(b->steps.v[0], "pip install -r requirements.txt");
	CHECK_STR(b->imports[0].value, "./requirements.txt");
	CHECK_STR(b->exports[0].value, "/build/dist/packages");
	const struct msb_sandbox *api = msb_sandboxfile_find(sf, "api");
	CHECK_STR(api->version, "1.0.0");
	CHECK_INT(api->depends_on.n, ==, 2);
	CHECK_STR(api->depends_on.v[0], "database");
	CHECK_STR(api->depends_on.v[1], "cache");
	CHECK_INT(api->scope, ==, MSB_SCOPE_PUBLIC);
	msb_sandboxfile_free(sf);
}

TEST(build_dependencies)
{
	struct msb_sandboxfile *sf = load_ok(t, "builds:\n"
						"  base:\n"
						"    image: \"python:3.11-slim\"\n"
						"    depends_on: [\"deps\"]\n"
						"  deps:\n"
						"    image: \"python:3.11-slim\"\n"
						"    steps:\n"
						"      - \"pip install -r requirements.txt\"\n");
	CHECK_STR(sf->builds[0].depends_on.v[0], "deps");
	CHECK_STR(sf->builds[1].steps.v[0], "pip install -r requirements.txt");
	msb_sandboxfile_free(sf);
}

TEST(invalid_scope_and_version)
{
	load_bad(t, "sandboxes:\n  test:\n    image: alpine\n    scope: \"invalid\"\n", 4, 12,
		 "none, group, public, any");
	load_bad(t, "sandboxes:\n  test:\n    image: alpine\n    scope: Public\n", 4, 12,
		 "lowercase");
	load_bad(t, "sandboxes:\n  test:\n    image: alpine\n    version: \"invalid\"\n", 4, 14,
		 "semantic version");
}

TEST(scopes)
{
	struct msb_sandboxfile *sf =
		load_ok(t, "sandboxes:\n  a: {image: x, scope: none}\n  b: {image: x, scope: "
			   "group}\n  c: {image: x, scope: any}\n");
	CHECK_INT(sf->sandboxes[0].scope, ==, MSB_SCOPE_NONE);
	CHECK_INT(sf->sandboxes[1].scope, ==, MSB_SCOPE_GROUP);
	CHECK_INT(sf->sandboxes[2].scope, ==, MSB_SCOPE_ANY);
	msb_sandboxfile_free(sf);
}

TEST(unknown_keys_ignored)
{
	struct msb_sandboxfile *sf =
		load_ok(t, "x-custom: [1, 2]\nsandboxes:\n  a:\n    image: "
			   "x\n    exec: ignored\n    network: {scope: none}\n");
	CHECK_INT(sf->nsandboxes, ==, 1);
	CHECK_INT(sf->sandboxes[0].scope, ==, MSB_SCOPE_PUBLIC);
	msb_sandboxfile_free(sf);
}

TEST(wrong_types_have_positions)
{
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    memory: lots\n", 4, 13,
		 "e.g. memory: 1024");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    memory: \"512\"\n", 4, 13,
		 "without quotes");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    memory: 0\n", 4, 13, "between 1 and");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    memory: 4294967296\n", 4, 13, "between");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    cpus: 256\n", 4, 11, "between 1 and 255");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    cpus: [1]\n", 4, 11, "not a list");
	load_bad(t, "sandboxes:\n  a:\n    image: [x]\n", 3, 12, "'image' must be text");
	load_bad(t, "sandboxes:\n  a:\n    memory: 5\n", 2, 3, "has no image");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    ports: \"8080:80\"\n", 4, 12,
		 "e.g. ports:");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    ports: [\"8080:http\"]\n", 4, 13,
		 "HOST_PORT:GUEST_PORT");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    envs: [\"=v\"]\n", 4, 12, "NAME=VALUE");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    envs: [{A: b}]\n", 4, 12, "NAME=VALUE");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    volumes: [\"./d:data\"]\n", 4, 15,
		 "absolute");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    workdir: app\n", 4, 14, "absolute");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    command: \"python app.py\"\n", 4, 14,
		 "e.g. command: [python, app.py]");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    scripts: [a]\n", 4, 14, "scripts:");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    scripts: {\"../x\": y}\n", 4, 15,
		 "without '/'");
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    scripts: {start: [y]}\n", 4, 22,
		 "not text");
	load_bad(t, "sandboxes: [a, b]\n", 1, 12, "mapping");
	load_bad(t, "- a\n- b\n", 1, 1, "sandboxes:");
	load_bad(t, "sandboxes:\n  a: python\n", 2, 6, "mapping of its settings");
	load_bad(t, "sandboxes:\n  a:\n", 2, 3, "mapping of its settings");
	load_bad(t, "sandboxes:\n  -bad:\n    image: x\n", 2, 3, "not a valid sandbox name");
	load_bad(t, "sandboxes:\n  a:\n    image: \"bad image!\"\n", 3, 12, "image reference");
	load_bad(t, "sandboxes:\n  a:\n    image: \"\"\n", 3, 12, "has no image");
	load_bad(t, "sandboxes:\n  a:\n    image: \"x\\0y\"\n", 3, 12, "NUL");
}

TEST(volumes_overlap_and_ports_twice)
{
	load_bad(t,
		 "sandboxes:\n  a:\n    image: x\n    volumes:\n      - ./a:/data\n      - "
		 "./b:/data/sub\n",
		 6, 9, "overlaps '/data'");
	struct msb_sandboxfile *sf =
		load_ok(t, "sandboxes:\n  a:\n    image: x\n    volumes: [\"./a:/data\", "
			   "\"./b:/database\", \"/abs\"]\n");
	CHECK_INT(sf->sandboxes[0].nvolumes, ==, 3);
	CHECK_STR(sf->sandboxes[0].volumes[2].host_abs, "/abs");
	CHECK_STR(sf->sandboxes[0].volumes[2].guest, "/abs");
	msb_sandboxfile_free(sf);
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    ports: [\"80:1\", \"80:2\"]\n", 4, 21,
		 "mapped twice");
}

TEST(local_rootfs_image)
{
	struct msb_sandboxfile *sf = load_ok(t, "sandboxes:\n  a: {image: ./rootfs}\n  b: "
						"{image: /srv/root}\n  c: {image: .}\n");
	CHECK(sf->sandboxes[0].image_is_path);
	CHECK_STR(sf->sandboxes[0].image_path, "/proj/rootfs");
	CHECK_STR(sf->sandboxes[1].image_path, "/srv/root");
	CHECK_STR(sf->sandboxes[2].image_path, "/proj");
	msb_sandboxfile_free(sf);
}

TEST(depends_on_checked_and_ordered)
{
	load_bad(t, "sandboxes:\n  a:\n    image: x\n    depends_on: [ghost]\n", 2, 3,
		 "'ghost', which is not a sandbox");
	load_bad(t,
		 "sandboxes:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: "
		 "[a]}\n",
		 0, 0, "depends on itself");
	load_bad(t, "sandboxes:\n  a: {image: x, depends_on: [a]}\n", 2, 3, "itself");
	struct msb_sandboxfile *sf = load_ok(t, "sandboxes:\n"
						"  web: {image: x, depends_on: [api, cache]}\n"
						"  api: {image: x, depends_on: [db]}\n"
						"  db: {image: x}\n"
						"  cache: {image: x, depends_on: [db]}\n"
						"  lone: {image: x}\n");
	const struct msb_sandbox **order = NULL;
	size_t n = 0;
	struct msb_err err = {0};
	CHECK_INT(msb_sandboxfile_start_order(sf, NULL, 0, &order, &n, &err), ==, 0);
	CHECK_INT(n, ==, 5);
	CHECK_STR(order[0]->name, "db");
	CHECK_STR(order[1]->name, "api");
	CHECK_STR(order[2]->name, "cache");
	CHECK_STR(order[3]->name, "web");
	CHECK_STR(order[4]->name, "lone");
	free(order);
	const char *names[] = {"cache"};
	CHECK_INT(msb_sandboxfile_start_order(sf, names, 1, &order, &n, &err), ==, 0);
	CHECK_INT(n, ==, 2);
	CHECK_STR(order[0]->name, "db");
	CHECK_STR(order[1]->name, "cache");
	free(order);
	const char *bad[] = {"nope"};
	CHECK_INT(msb_sandboxfile_start_order(sf, bad, 1, &order, &n, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	msb_sandboxfile_free(sf);
}

TEST(command_and_scripts_in_order)
{
	struct msb_sandboxfile *sf = load_ok(t, "sandboxes:\n  a:\n    image: x\n    command: "
						"[python, -c, \"print(1)\"]\n    scripts:\n      "
						"z: one\n      a: |\n        two\n        three\n");
	const struct msb_sandbox *sb = &sf->sandboxes[0];
	CHECK_INT(sb->command.n, ==, 3);
	CHECK_STR(sb->command.v[2], "print(1)");
	CHECK(sb->command.v[3] == NULL);
	CHECK_STR(sb->scripts[0].key, "z");
	CHECK_STR(sb->scripts[1].key, "a");
	CHECK_STR(sb->scripts[1].value, "two\nthree\n");
	msb_sandboxfile_free(sf);
}

TEST(load_from_disk)
{
	char dir[] = "/tmp/msb-sf-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/Sandboxfile", dir);
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_load(path, &sf, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	CHECK(strstr(err.msg, "msb init") != NULL);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("sandboxes:\n  a:\n    image: x\n    volumes: [\"data:/d\"]\n", f);
	fclose(f);
	CHECK_INT(msb_sandboxfile_load(path, &sf, &err), ==, 0);
	char want[300];
	snprintf(want, sizeof(want), "%s/data", dir);
	CHECK_STR(sf->sandboxes[0].volumes[0].host_abs, want);
	msb_sandboxfile_free(sf);
	unlink(path);
	rmdir(dir);
}

TEST_MAIN(T(empty_config), T(default_config_empty_sections), T(minimal_sandbox), T(basic_config),
	  T(full_config), T(build_dependencies), T(invalid_scope_and_version), T(scopes),
	  T(unknown_keys_ignored), T(wrong_types_have_positions),
	  T(volumes_overlap_and_ports_twice), T(local_rootfs_image),
	  T(depends_on_checked_and_ordered), T(command_and_scripts_in_order), T(load_from_disk))
