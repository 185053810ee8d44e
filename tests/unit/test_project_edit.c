/* Format-preserving `msb add` / `msb remove`: exact bytes out for each shape of
 * file, and add-then-remove giving the original back byte for byte. */
#include "test.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "project/edit.h"

static const struct msb_sandbox_spec simple = {.image = "python"};

static char *add(struct test_ctx *t, const char *in, const char *name,
		 const struct msb_sandbox_spec *spec)
{
	struct msb_err err = {0};
	char *out = NULL;
	size_t n;
	const char *names[] = {name};
	if (msb_sandboxfile_text_add(in, strlen(in), "Sandboxfile", names, 1, spec, &out, &n,
				     &err) != 0)
		TEST_FAIL("add refused: %s", err.msg);
	CHECK_INT(strlen(out), ==, n);
	return out;
}

static char *rm(struct test_ctx *t, const char *in, const char *name)
{
	struct msb_err err = {0};
	char *out = NULL;
	size_t n;
	const char *names[] = {name};
	if (msb_sandboxfile_text_remove(in, strlen(in), "Sandboxfile", names, 1, &out, &n, &err) !=
	    0)
		TEST_FAIL("remove refused: %s", err.msg);
	return out;
}

#define CHECK_TEXT(got, want)                                                                 \
	do {                                                                                  \
		const char *g_ = (got), *w_ = (want);                                         \
		if (strcmp(g_, w_) != 0)                                                      \
			TEST_FAIL("text differs.\n--- got:\n%s\n--- want:\n%s\n---", g_, w_); \
	} while (0)

TEST(add_to_init_file)
{
	_cleanup_free_ char *o = add(t, "# Sandbox configurations\nsandboxes:\n", "web", &simple);
	CHECK_TEXT(o, "# Sandbox configurations\nsandboxes:\n  web:\n    image: python\n    shell: "
		      "/bin/sh\n");
}

TEST(add_keeps_comments_and_order)
{
	const char *in = "# top comment\n"
			 "meta:\n"
			 "  description: demo   # inline\n"
			 "\n"
			 "sandboxes:\n"
			 "    # about api\n"
			 "    api:\n"
			 "        image: \"python:3.11\"  # pinned\n"
			 "        scripts:\n"
			 "            start: |\n"
			 "                python app.py\n"
			 "\n"
			 "    # trailing comment inside sandboxes\n"
			 "\n"
			 "# before builds\n"
			 "builds: {}\n";
	_cleanup_free_ char *o = add(t, in, "db", &simple);
	CHECK_TEXT(o, "# top comment\n"
		      "meta:\n"
		      "  description: demo   # inline\n"
		      "\n"
		      "sandboxes:\n"
		      "    # about api\n"
		      "    api:\n"
		      "        image: \"python:3.11\"  # pinned\n"
		      "        scripts:\n"
		      "            start: |\n"
		      "                python app.py\n"
		      "    db:\n"
		      "        image: python\n"
		      "        shell: /bin/sh\n"
		      "\n"
		      "    # trailing comment inside sandboxes\n"
		      "\n"
		      "# before builds\n"
		      "builds: {}\n");
	_cleanup_free_ char *back = rm(t, o, "db");
	CHECK_TEXT(back, in);
}

TEST(add_every_field)
{
	const char *vols[] = {"./data:/data", "/tmp"};
	const char *ports[] = {"8080:80"};
	const char *envs[] = {"A=1", "MSG=hello world"};
	const char *deps[] = {"db"};
	const struct msb_kv scripts[] = {{"start", "python app.py"},
					 {"test", "set -e\npytest -q\n"},
					 {"odd", "say \"hi\"\tnow"}};
	const struct msb_kv imports[] = {{"req", "./requirements.txt"}};
	struct msb_sandbox_spec s = {.image = "ghcr.io/o/img:1.0",
				     .memory_mib = 512,
				     .cpus = 2,
				     .shell = "/bin/bash",
				     .volumes = vols,
				     .nvolumes = 2,
				     .ports = ports,
				     .nports = 1,
				     .envs = envs,
				     .nenvs = 2,
				     .depends_on = deps,
				     .ndepends_on = 1,
				     .workdir = "/app",
				     .scripts = scripts,
				     .nscripts = 3,
				     .imports = imports,
				     .nimports = 1,
				     .scope = "none"};
	_cleanup_free_ char *o = add(t, "sandboxes:\n  db:\n    image: postgres\n", "web", &s);
	CHECK_TEXT(o, "sandboxes:\n"
		      "  db:\n"
		      "    image: postgres\n"
		      "  web:\n"
		      "    image: ghcr.io/o/img:1.0\n"
		      "    memory: 512\n"
		      "    cpus: 2\n"
		      "    shell: /bin/bash\n"
		      "    volumes:\n"
		      "      - \"./data:/data\"\n"
		      "      - /tmp\n"
		      "    ports:\n"
		      "      - \"8080:80\"\n"
		      "    envs:\n"
		      "      - A=1\n"
		      "      - \"MSG=hello world\"\n"
		      "    depends_on:\n"
		      "      - db\n"
		      "    workdir: /app\n"
		      "    scripts:\n"
		      "      start: \"python app.py\"\n"
		      "      test: |\n"
		      "        set -e\n"
		      "        pytest -q\n"
		      "      odd: \"say \\\"hi\\\"\\tnow\"\n"
		      "    imports:\n"
		      "      req: \"./requirements.txt\"\n"
		      "    scope: none\n");
	/* It loads back with the same values. */
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_parse(o, strlen(o), "Sandboxfile", "/p", &sf, &err), ==, 0);
	const struct msb_sandbox *sb = msb_sandboxfile_find(sf, "web");
	CHECK(sb != NULL);
	CHECK_STR(msb_sandbox_script(sb, "test"), "set -e\npytest -q\n");
	CHECK_STR(msb_sandbox_script(sb, "odd"), "say \"hi\"\tnow");
	CHECK_STR(sb->envs[1].value, "hello world");
	CHECK_INT(sb->scope, ==, MSB_SCOPE_NONE);
	msb_sandboxfile_free(sf);
}

TEST(add_without_sandboxes_key)
{
	_cleanup_free_ char *o = add(t, "meta:\n  description: x\n# end", "a", &simple);
	CHECK_TEXT(o, "meta:\n  description: x\nsandboxes:\n  a:\n    image: python\n    "
		      "shell: /bin/sh\n# end");
	_cleanup_free_ char *d = add(t, "---\nmeta: {}\n...\n", "a", &simple);
	CHECK_TEXT(d, "---\nmeta: {}\nsandboxes:\n  a:\n    image: python\n    shell: "
		      "/bin/sh\n...\n");
	_cleanup_free_ char *o2 = add(t, "", "a", &simple);
	CHECK_TEXT(o2, "sandboxes:\n  a:\n    image: python\n    shell: /bin/sh\n");
	_cleanup_free_ char *o3 = add(t, "# only a comment\n", "a", &simple);
	CHECK_TEXT(o3,
		   "# only a comment\nsandboxes:\n  a:\n    image: python\n    shell: /bin/sh\n");
}

TEST(add_to_null_forms)
{
	_cleanup_free_ char *o = add(t, "sandboxes: ~   # none yet\nother: 1\n", "a", &simple);
	CHECK_TEXT(o, "sandboxes:    # none yet\n  a:\n    image: python\n    shell: "
		      "/bin/sh\nother: 1\n");
	_cleanup_free_ char *o2 = add(t, "sandboxes:", "a", &simple);
	CHECK_TEXT(o2, "sandboxes:\n  a:\n    image: python\n    shell: /bin/sh\n");
	_cleanup_free_ char *o3 = add(t, "sandboxes:\n\n# c\nx: 1\n", "a", &simple);
	CHECK_TEXT(o3, "sandboxes:\n  a:\n    image: python\n    shell: /bin/sh\n\n# c\nx: 1\n");
}

TEST(add_flow_mapping)
{
	_cleanup_free_ char *o = add(t, "sandboxes: {}  # flow\n", "a", &simple);
	CHECK_TEXT(o, "sandboxes: {a: {image: python, shell: /bin/sh}}  # flow\n");
	_cleanup_free_ char *o2 = add(t, o, "b", &simple);
	CHECK_TEXT(o2, "sandboxes: {a: {image: python, shell: /bin/sh}, b: {image: python, shell: "
		       "/bin/sh}}  # flow\n");
	_cleanup_free_ char *r = rm(t, o2, "b");
	CHECK_TEXT(r, o);
	_cleanup_free_ char *r2 = rm(t, o2, "a");
	CHECK_TEXT(r2, "sandboxes: {b: {image: python, shell: /bin/sh}}  # flow\n");
	_cleanup_free_ char *r3 = rm(t, r2, "b");
	CHECK_TEXT(r3, "sandboxes: {}  # flow\n");
}

TEST(crlf_and_no_final_newline)
{
	_cleanup_free_ char *o = add(t, "sandboxes:\r\n  a:\r\n    image: x\r\n", "b", &simple);
	CHECK_TEXT(o, "sandboxes:\r\n  a:\r\n    image: x\r\n  b:\r\n    image: python\r\n    "
		      "shell: /bin/sh\r\n");
	_cleanup_free_ char *o2 = add(t, "sandboxes:\n  a:\n    image: x", "b", &simple);
	CHECK_TEXT(o2, "sandboxes:\n  a:\n    image: x\n  b:\n    image: python\n    shell: "
		       "/bin/sh\n");
}

TEST(utf8_and_bom_positions)
{
	const char *in = "\xEF\xBB\xBF# caf\xC3\xA9\nsandboxes:\n  a: {image: x, envs: "
			 "[\"N=\xC3\xA9\xC3\xA9\"]}  # \xE2\x82\xAC\n# tail\n";
	_cleanup_free_ char *o = add(t, in, "b", &simple);
	CHECK_TEXT(o, "\xEF\xBB\xBF# caf\xC3\xA9\nsandboxes:\n  a: {image: x, envs: "
		      "[\"N=\xC3\xA9\xC3\xA9\"]}  # \xE2\x82\xAC\n  b:\n    image: python\n    "
		      "shell: /bin/sh\n# tail\n");
	_cleanup_free_ char *back = rm(t, o, "b");
	CHECK_TEXT(back, in);
}

TEST(remove_keeps_the_rest)
{
	const char *in = "# head\n"
			 "sandboxes:\n"
			 "  a:\n"
			 "    image: x   # a's image\n"
			 "  # about b\n"
			 "  b:\n"
			 "    image: y\n"
			 "    scripts:\n"
			 "      start: |\n"
			 "        run\n"
			 "\n"
			 "  c: {image: z}\n"
			 "tail: 1 # t\n";
	_cleanup_free_ char *r1 = rm(t, in, "a");
	CHECK_TEXT(r1, "# head\nsandboxes:\n  # about b\n  b:\n    image: y\n    scripts:\n      "
		       "start: |\n        run\n\n  c: {image: z}\ntail: 1 # t\n");
	_cleanup_free_ char *r2 = rm(t, in, "b");
	/* The blank line after b's block scalar separated b from c: it stays. */
	CHECK_TEXT(r2, "# head\nsandboxes:\n  a:\n    image: x   # a's image\n  # about b\n\n  "
		       "c: {image: z}\ntail: 1 # t\n");
	_cleanup_free_ char *r3 = rm(t, in, "c");
	CHECK_TEXT(r3, "# head\nsandboxes:\n  a:\n    image: x   # a's image\n  # about b\n  b:\n "
		       "   image: y\n    scripts:\n      start: |\n        run\n\ntail: 1 # t\n");
	_cleanup_free_ char *r4 = rm(t, r3, "a");
	_cleanup_free_ char *r5 = rm(t, r4, "b");
	CHECK_TEXT(r5, "# head\nsandboxes:\n  # about b\n\ntail: 1 # t\n");
	/* ... and the emptied file still loads, with no sandboxes. */
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_parse(r5, strlen(r5), "S", "/p", &sf, &err), ==, 0);
	CHECK_INT(sf->nsandboxes, ==, 0);
	msb_sandboxfile_free(sf);
}

TEST(round_trips_byte_for_byte)
{
	const char *files[] = {
		"sandboxes:\n  a:\n    image: x\n",
		"# c1\n\nsandboxes:   # c2\n\n  a:   # c3\n    image: x\n\n\n# c4\nmeta: {}\n",
		"sandboxes:\n- bad\n",
		"sandboxes:\n    x:\n        image: x\n        command:\n        - a\n        - "
		"b\n",
		"sandboxes:\n  a: &base\n    image: x\n  b: *base\n",
		"meta:\n  tags: [a, b]\nsandboxes:\n  a:\n    image: x\n    scripts:\n      s: >\n "
		"       folded\n        text\n\n\n",
	};
	for (size_t i = 0; i < MSB_ARRAY_SIZE(files); i++) {
		struct msb_err err = {0};
		char *o = NULL;
		size_t n;
		const char *names[] = {"new1", "new2"};
		if (msb_sandboxfile_text_add(files[i], strlen(files[i]), "S", names, 2, &simple, &o,
					     &n, &err) != 0) {
			if (i == 2)
				continue; /* a list: refused, as it must be */
			TEST_FAIL("file %zu: %s", i, err.msg);
		}
		CHECK(i != 2);
		char *back = NULL;
		if (msb_sandboxfile_text_remove(o, n, "S", names, 2, &back, &n, &err) != 0)
			TEST_FAIL("file %zu: %s\n%s", i, err.msg, o);
		if (strcmp(back, files[i]) != 0)
			TEST_FAIL("file %zu changed:\n%s\n--- after add:\n%s", i, back, o);
		free(o);
		free(back);
	}
}

TEST(refusals)
{
	struct msb_err err = {0};
	char *o = NULL;
	size_t n;
	const char *a[] = {"a"};
	const char *in = "sandboxes:\n  a:\n    image: x\n";
	CHECK_INT(msb_sandboxfile_text_add(in, strlen(in), "S", a, 1, &simple, &o, &n, &err), ==,
		  -1);
	CHECK_INT(err.kind, ==, MSB_EK_EXISTS);
	CHECK(strstr(err.msg, "already exists") != NULL);
	const char *b[] = {"b"};
	CHECK_INT(msb_sandboxfile_text_remove(in, strlen(in), "S", b, 1, &o, &n, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	const char *twice[] = {"x", "x"};
	CHECK_INT(msb_sandboxfile_text_add(in, strlen(in), "S", twice, 2, &simple, &o, &n, &err),
		  ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	const char *flow = "{sandboxes: {}}";
	CHECK_INT(msb_sandboxfile_text_add(flow, strlen(flow), "S", b, 1, &simple, &o, &n, &err),
		  ==, -1);
	CHECK(strstr(err.msg, "flow style") != NULL);
	const char *broken = "sandboxes:\n  a: [\n";
	CHECK_INT(
		msb_sandboxfile_text_add(broken, strlen(broken), "S", b, 1, &simple, &o, &n, &err),
		==, -1);
	CHECK(strncmp(err.msg, "S:", 2) == 0);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strdup(buf);
}

static char *set(struct test_ctx *t, const char *in, const char *name,
		 const struct msb_sandbox_spec *spec)
{
	struct msb_err err = {0};
	char *out = NULL;
	size_t n;
	if (msb_sandboxfile_text_set(in, strlen(in), "Sandboxfile", name, spec, &out, &n, &err) !=
	    0)
		TEST_FAIL("set refused: %s", err.msg);
	return out;
}

TEST(set_replaces_in_place_or_adds)
{
	const char *in = "# head\n"
			 "sandboxes:\n"
			 "    a:   # old a\n"
			 "        image: old\n"
			 "        memory: 128\n"
			 "    # about b\n"
			 "    b:\n"
			 "        image: keep\n"
			 "tail: 1\n";
	const char *ports[] = {"5555:4444"};
	struct msb_sandbox_spec s = {.image = "microsandbox/python",
				     .memory_mib = 512,
				     .ports = ports,
				     .nports = 1,
				     .no_default_shell = true};
	_cleanup_free_ char *o = set(t, in, "a", &s);
	CHECK_TEXT(o, "# head\n"
		      "sandboxes:\n"
		      "    a:\n"
		      "        image: microsandbox/python\n"
		      "        memory: 512\n"
		      "        ports:\n"
		      "            - \"5555:4444\"\n"
		      "    # about b\n"
		      "    b:\n"
		      "        image: keep\n"
		      "tail: 1\n");
	_cleanup_free_ char *o2 = set(t, o, "c", &s);
	CHECK(strstr(o2, "        image: keep\n    c:\n        image: microsandbox/python\n") !=
	      NULL);
	_cleanup_free_ char *f = set(t, "sandboxes: {a: {image: x}, b: {image: y}}\n", "a", &s);
	CHECK_TEXT(f, "sandboxes: {a: {image: microsandbox/python, memory: 512, ports: "
		      "[\"5555:4444\"]}, b: {image: y}}\n");
	_cleanup_free_ char *e = set(t, "", "a", &simple);
	CHECK_TEXT(e, "sandboxes:\n  a:\n    image: python\n    shell: /bin/sh\n");
}

TEST(file_edits_verify_and_never_lose_the_file)
{
	char dir[] = "/tmp/msb-edit-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/Sandboxfile", dir);
	const char *orig = "# mine\nsandboxes:\n  db:\n    image: postgres # keep\n";
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(orig, f);
	fclose(f);
	chmod(path, 0600);
	struct msb_err err = {0};
	const char *names[] = {"web", "worker"};
	const char *badports[] = {"80:http"};
	struct msb_sandbox_spec bad = {.image = "python", .ports = badports, .nports = 1};
	CHECK_INT(msb_sandboxfile_add(path, names, 2, &bad, &err), ==, -1);
	CHECK(strstr(err.msg, "--port") != NULL);
	_cleanup_free_ char *same = slurp(path);
	CHECK_STR(same, orig);
	const char *badname[] = {"-x"};
	CHECK_INT(msb_sandboxfile_add(path, badname, 1, &simple, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_USAGE);
	CHECK_INT(msb_sandboxfile_add(path, names, 2, &simple, &err), ==, 0);
	_cleanup_free_ char *added = slurp(path);
	CHECK_TEXT(added, "# mine\nsandboxes:\n  db:\n    image: postgres # keep\n  web:\n    "
			  "image: python\n    shell: /bin/sh\n  worker:\n    image: python\n    "
			  "shell: /bin/sh\n");
	struct stat st;
	CHECK_INT(stat(path, &st), ==, 0);
	CHECK_INT(st.st_mode & 0777, ==, 0600);
	const char *rmnames[] = {"worker", "nope"};
	CHECK_INT(msb_sandboxfile_remove(path, rmnames, 2, &err), ==, -1);
	CHECK_INT(err.kind, ==, MSB_EK_NOT_FOUND);
	_cleanup_free_ char *still = slurp(path);
	CHECK_STR(still, added);
	CHECK_INT(msb_sandboxfile_remove(path, names, 2, &err), ==, 0);
	_cleanup_free_ char *back = slurp(path);
	CHECK_STR(back, orig);
	/* set: replaced in place, verified, atomic. */
	struct msb_sandbox_spec pg = {.image = "postgres:16", .memory_mib = 2048};
	CHECK_INT(msb_sandboxfile_set(path, "db", &pg, &err), ==, 0);
	_cleanup_free_ char *replaced = slurp(path);
	CHECK_TEXT(replaced, "# mine\nsandboxes:\n  db:\n    image: postgres:16\n    memory: "
			     "2048\n    shell: /bin/sh\n");
	CHECK_INT(msb_sandboxfile_set(path, "db", &bad, &err), ==, -1);
	_cleanup_free_ char *unchanged = slurp(path);
	CHECK_STR(unchanged, replaced);
	/* A symlinked Sandboxfile stays a symlink; its target is edited. */
	char link[300];
	snprintf(link, sizeof(link), "%s/Linked", dir);
	CHECK_INT(symlink("Sandboxfile", link), ==, 0);
	const char *l1[] = {"vialink"};
	CHECK_INT(msb_sandboxfile_add(link, l1, 1, &simple, &err), ==, 0);
	struct stat lst;
	CHECK_INT(lstat(link, &lst), ==, 0);
	CHECK(S_ISLNK(lst.st_mode));
	_cleanup_free_ char *through = slurp(path);
	CHECK(strstr(through, "  vialink:\n") != NULL);
	unlink(link);
	/* A file with an error is not edited; the message points into it. */
	f = fopen(path, "w");
	fputs("sandboxes:\n  db:\n    image: postgres\n    memory: lots\n", f);
	fclose(f);
	CHECK_INT(msb_sandboxfile_add(path, names, 1, &simple, &err), ==, -1);
	CHECK(strstr(err.msg, ":4:13:") != NULL);
	unlink(path);
	rmdir(dir);
}

TEST(concurrent_adds_lose_nothing)
{
	char dir[] = "/tmp/msb-conc-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/Sandboxfile", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("sandboxes:\n", f);
	fclose(f);
	enum { N = 8 };
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			char name[16];
			snprintf(name, sizeof(name), "s%d", i);
			const char *names[] = {name};
			struct msb_err err;
			_exit(msb_sandboxfile_add(path, names, 1, &simple, &err) == 0 ? 0 : 1);
		}
		CHECK(kids[i] > 0);
	}
	for (int i = 0; i < N; i++) {
		int status;
		CHECK_INT(waitpid(kids[i], &status, 0), ==, kids[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	struct msb_err err = {0};
	struct msb_sandboxfile *sf = NULL;
	CHECK_INT(msb_sandboxfile_load(path, &sf, &err), ==, 0);
	CHECK_INT(sf->nsandboxes, ==, N);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "s%d", i);
		CHECK(msb_sandboxfile_find(sf, name) != NULL);
	}
	msb_sandboxfile_free(sf);
	unlink(path);
	rmdir(dir);
}

TEST_MAIN(T(add_to_init_file), T(add_keeps_comments_and_order), T(add_every_field),
	  T(add_without_sandboxes_key), T(add_to_null_forms), T(add_flow_mapping),
	  T(crlf_and_no_final_newline), T(utf8_and_bom_positions), T(remove_keeps_the_rest),
	  T(round_trips_byte_for_byte), T(refusals), T(set_replaces_in_place_or_adds),
	  T(file_edits_verify_and_never_lose_the_file), T(concurrent_adds_lose_nothing))
