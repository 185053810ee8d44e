/* The warm snapshot without a VM: its key and what changes it, the programs
 * msb exe asks the guest to read, SETUP's WARM fields on the wire, msb-init's
 * ELF parser on real and hostile files and its PATH lookup, and `msb snapshot
 * prune` on warm snapshot directories made by hand. */
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/client.h"
#include "agent/proto.h"
#include "common/paths.h"
#include "init/warm.h"
#include "project/menv.h"
#include "sandbox/net.h"
#include "sandbox/snapshot.h"
#include "test.h"

static void put_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

TEST(warm_key_changes_with_what_makes_it_valid)
{
	struct sandbox_file_id id = {.size = 100, .mtime_ns = 5, .ino = 7, .dev = 9};
	char *a = sandbox_warm_key_text("0123456789abcdef", "sha256:aa", "/s/r.erofs", &id);
	CHECK(a != NULL);
	CHECK(strstr(a, SANDBOX_WARM_LAYOUT) != NULL);
	CHECK(strstr(a, "overlay=tmpfs") != NULL);
	CHECK(strstr(a, "eth0=10.0.2.15/24 10.0.2.2 10.0.2.3") != NULL);
	struct sandbox_file_id ids[4] = {id, id, id, id};
	ids[0].size++;
	ids[1].mtime_ns++;
	ids[2].ino++;
	ids[3].dev++;
	for (int i = 0; i < 4; i++) {
		char *b = sandbox_warm_key_text("0123456789abcdef", "sha256:aa", "/s/r.erofs",
						&ids[i]);
		CHECK(b && strcmp(a, b) != 0);
		free(b);
	}
	const char *other[3][3] = {{"0123456789abcdee", "sha256:aa", "/s/r.erofs"},
				   {"0123456789abcdef", "sha256:ab", "/s/r.erofs"},
				   {"0123456789abcdef", "sha256:aa", "/s/q.erofs"}};
	for (int i = 0; i < 3; i++) {
		char *b = sandbox_warm_key_text(other[i][0], other[i][1], other[i][2], &id);
		CHECK(b && strcmp(a, b) != 0);
		free(b);
	}
	free(a);
}

TEST(warm_key_of_a_real_file)
{
	char dir[] = "/tmp/msb-warmkey-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char f[64];
	snprintf(f, sizeof(f), "%s/r.erofs", dir);
	put_file(f, "x", 1, 0600);
	struct msb_err err = {0};
	char k1[17], k2[17], k3[17];
	CHECK_INT(sandbox_warm_key("0123456789abcdef", "sha256:aa", f, k1, &err), ==, 0);
	CHECK_INT(strlen(k1), ==, 16);
	CHECK_INT(sandbox_warm_key("0123456789abcdef", "sha256:aa", f, k2, &err), ==, 0);
	CHECK(strcmp(k1, k2) == 0);
	put_file(f, "xy", 2, 0600); /* a re-pulled image: another size */
	CHECK_INT(sandbox_warm_key("0123456789abcdef", "sha256:aa", f, k3, &err), ==, 0);
	CHECK(strcmp(k1, k3) != 0);
	unlink(f);
	CHECK_INT(sandbox_warm_key("0123456789abcdef", "sha256:aa", f, k3, &err), ==, -1);
	CHECK(strstr(err.msg, "r.erofs") != NULL);
	rmdir(dir);
}

TEST(warm_root_and_wanted)
{
	struct msb_err err = {0};
	setenv("MICROSANDBOX_HOME", "/h", 1);
	unsetenv("MSB_WARM_SNAPSHOTS");
	char *r = sandbox_warm_root(&err);
	CHECK(r && strcmp(r, "/h/snapshots/warm") == 0);
	free(r);
	setenv("MSB_WARM_SNAPSHOTS", "/w", 1);
	r = sandbox_warm_root(&err);
	CHECK(r && strcmp(r, "/w") == 0);
	free(r);
	unsetenv("MSB_WARM_SNAPSHOTS");
	unsetenv("MSB_NO_WARM_SNAPSHOT");
	struct sandbox_spec s = {.warm = true};
	CHECK(sandbox_warm_wanted(&s));
	setenv("MSB_NO_WARM_SNAPSHOT", "1", 1);
	CHECK(!sandbox_warm_wanted(&s));
	setenv("MSB_NO_WARM_SNAPSHOT", "0", 1);
	CHECK(sandbox_warm_wanted(&s));
	unsetenv("MSB_NO_WARM_SNAPSHOT");
	s.rw_disk = "/x/rw.ext4"; /* msb run's writable layer: the base path */
	CHECK(!sandbox_warm_wanted(&s));
	s.rw_disk = NULL;
	s.snapshot_dir = "/x/user/s1";
	CHECK(!sandbox_warm_wanted(&s));
	s.snapshot_dir = NULL;
	/* its eth0 is configured: --scope none restores the base */
	struct sandbox_net none = {.scope = MSB_SCOPE_NONE}, pub = {.scope = MSB_SCOPE_PUBLIC};
	s.net = &none;
	CHECK(!sandbox_warm_wanted(&s));
	s.net = &pub;
	CHECK(sandbox_warm_wanted(&s));
	s.warm = false;
	CHECK(!sandbox_warm_wanted(&s));
}

TEST(warm_programs_of_a_run)
{
	const char *out[3];
	const char *ep[] = {"/docker-entrypoint.sh", NULL};
	const char *cmd[] = {"python3", NULL};
	CHECK_INT(sandbox_warm_programs("true", ep, cmd, out, 3), ==, 3);
	CHECK(strcmp(out[0], "true") == 0 && strcmp(out[1], "/docker-entrypoint.sh") == 0 &&
	      strcmp(out[2], "/bin/sh") == 0);
	/* no Entrypoint: Cmd[0]; duplicates once; relative paths are not looked up */
	CHECK_INT(sandbox_warm_programs("python3", NULL, cmd, out, 3), ==, 2);
	CHECK(strcmp(out[0], "python3") == 0 && strcmp(out[1], "/bin/sh") == 0);
	CHECK_INT(sandbox_warm_programs("./run", NULL, NULL, out, 3), ==, 1);
	CHECK(strcmp(out[0], "/bin/sh") == 0);
	CHECK_INT(sandbox_warm_programs("sh", NULL, NULL, out, 1), ==, 1);
}

TEST(setup_warm_fields_on_the_wire)
{
	struct agent_buf b = {0};
	agent_msg_begin(&b, AGENT_SETUP, 1, 0);
	agent_put_str(&b, AGENT_T_WARM, "true");
	agent_put_str(&b, AGENT_T_WARM, "/bin/sh");
	agent_put_str(&b, AGENT_T_WARM_PATH, "/usr/bin:/bin");
	struct msb_err err = {0};
	CHECK_INT(agent_msg_end(&b, &err), ==, 0);
	struct agent_setup_req r;
	CHECK_INT(agent_decode_setup(b.data + AGENT_HDR_SIZE, b.len - AGENT_HDR_SIZE, &r, &err), ==,
		  0);
	CHECK_INT(r.nwarm, ==, 2);
	CHECK(strcmp(r.warm[0], "true") == 0 && strcmp(r.warm[1], "/bin/sh") == 0);
	CHECK(strcmp(r.warm_path, "/usr/bin:/bin") == 0);
	CHECK(!r.root_dev[0]); /* WARM needs no root in the same request */
	agent_buf_release(&b);
	/* hostile: a relative path, an empty name, too many, too long */
	const char *bad[] = {"a/b", "", "../x"};
	for (size_t i = 0; i < 3; i++) {
		struct agent_buf c = {0};
		agent_msg_begin(&c, AGENT_SETUP, 1, 0);
		agent_put_str(&c, AGENT_T_WARM, bad[i]);
		CHECK_INT(agent_msg_end(&c, &err), ==, 0);
		CHECK_INT(agent_decode_setup(c.data + AGENT_HDR_SIZE, c.len - AGENT_HDR_SIZE, &r,
					     &err),
			  ==, -1);
		CHECK(strstr(err.msg, "WARM") != NULL);
		agent_buf_release(&c);
	}
	struct agent_buf c = {0};
	agent_msg_begin(&c, AGENT_SETUP, 1, 0);
	for (int i = 0; i <= AGENT_WARM_MAX; i++)
		agent_put_str(&c, AGENT_T_WARM, "sh");
	CHECK_INT(agent_msg_end(&c, &err), ==, 0);
	CHECK_INT(agent_decode_setup(c.data + AGENT_HDR_SIZE, c.len - AGENT_HDR_SIZE, &r, &err), ==,
		  -1);
	CHECK(strstr(err.msg, "more than") != NULL);
	agent_buf_release(&c);
	char long_name[AGENT_WARM_NAME_MAX + 1];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	struct agent_buf d = {0};
	agent_msg_begin(&d, AGENT_SETUP, 1, 0);
	agent_put_str(&d, AGENT_T_WARM, long_name);
	CHECK_INT(agent_msg_end(&d, &err), ==, 0);
	CHECK_INT(agent_decode_setup(d.data + AGENT_HDR_SIZE, d.len - AGENT_HDR_SIZE, &r, &err), ==,
		  -1);
	agent_buf_release(&d);
}

/* A small dynamic ELF64 image built by hand: ehdr, phdrs (LOAD, INTERP,
 * DYNAMIC), interp string, dynamic section, string table. */
static size_t make_elf(uint8_t *buf, size_t cap, const char *interp, const char *const *needed,
		       size_t nneeded)
{
	memset(buf, 0, cap);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_phoff = sizeof(Elf64_Ehdr);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = 3;
	Elf64_Phdr *ph = (Elf64_Phdr *)(buf + eh->e_phoff);
	size_t off = eh->e_phoff + 3 * sizeof(Elf64_Phdr);
	size_t il = strlen(interp) + 1;
	memcpy(buf + off, interp, il);
	ph[1] = (Elf64_Phdr){.p_type = PT_INTERP, .p_offset = off, .p_filesz = il};
	off = (off + il + 7) & ~(size_t)7;
	size_t dyn = off, ndyn = nneeded + 3;
	size_t str = dyn + ndyn * sizeof(Elf64_Dyn);
	Elf64_Dyn *d = (Elf64_Dyn *)(buf + dyn);
	size_t so = 1; /* strtab[0] = "" */
	for (size_t i = 0; i < nneeded; i++) {
		d[i] = (Elf64_Dyn){.d_tag = DT_NEEDED, .d_un.d_val = so};
		memcpy(buf + str + so, needed[i], strlen(needed[i]) + 1);
		so += strlen(needed[i]) + 1;
	}
	/* the string table is addressed by virtual address: vaddr 0x400000 + offset */
	d[nneeded] = (Elf64_Dyn){.d_tag = DT_STRTAB, .d_un.d_ptr = 0x400000 + str};
	d[nneeded + 1] = (Elf64_Dyn){.d_tag = DT_STRSZ, .d_un.d_val = so};
	d[nneeded + 2] = (Elf64_Dyn){.d_tag = DT_NULL};
	size_t total = str + so;
	ph[0] = (Elf64_Phdr){
		.p_type = PT_LOAD, .p_offset = 0, .p_vaddr = 0x400000, .p_filesz = total};
	ph[2] = (Elf64_Phdr){
		.p_type = PT_DYNAMIC, .p_offset = dyn, .p_filesz = ndyn * sizeof(Elf64_Dyn)};
	return total;
}

TEST(elf_dependencies)
{
	static uint8_t buf[4096];
	const char *needed[] = {"libc.so.6", "libm.so.6", "/opt/lib/libz.so"};
	size_t n = make_elf(buf, sizeof(buf), "/lib64/ld-linux-x86-64.so.2", needed, 3);
	struct warm_elf e;
	CHECK_INT(warm_elf_parse(buf, n, &e), ==, 0);
	CHECK(strcmp(e.interp, "/lib64/ld-linux-x86-64.so.2") == 0);
	CHECK_INT(e.nneeded, ==, 3);
	CHECK(strcmp(e.needed[0], "libc.so.6") == 0 &&
	      strcmp(e.needed[2], "/opt/lib/libz.so") == 0);
	/* this test binary itself (dynamic, on the build host) */
	int fd = open("/proc/self/exe", O_RDONLY);
	static uint8_t self[64 << 20];
	ssize_t got = fd >= 0 ? read(fd, self, sizeof(self)) : -1;
	close(fd);
	CHECK(got > 0);
	CHECK_INT(warm_elf_parse(self, (size_t)got, &e), ==, 0);
	CHECK(e.interp[0] == '/');
	CHECK_INT(e.nneeded, >=, 1);
}

TEST(elf_hostile_input)
{
	static uint8_t buf[4096], bad[4096];
	const char *needed[] = {"libc.so.6", "../../etc/passwd", "a/b", "lib x.so"};
	size_t n = make_elf(buf, sizeof(buf), "/lib/ld.so", needed, 4);
	struct warm_elf e;
	/* relative paths with '/', and names with spaces, are left out */
	CHECK_INT(warm_elf_parse(buf, n, &e), ==, 0);
	CHECK_INT(e.nneeded, ==, 1);
	/* every truncation: no crash, no read past the end (ASan) */
	for (size_t l = 0; l < n; l++) {
		uint8_t *cut = malloc(l ? l : 1);
		memcpy(cut, buf, l);
		warm_elf_parse(cut, l, &e);
		free(cut);
	}
	/* not ELF, 32-bit, big-endian, absurd counts and offsets */
	CHECK_INT(warm_elf_parse((const uint8_t *)"#!/bin/sh\n", 10, &e), ==, -1);
	memcpy(bad, buf, n);
	bad[EI_CLASS] = ELFCLASS32;
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, -1);
	memcpy(bad, buf, n);
	bad[EI_DATA] = ELFDATA2MSB;
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, -1);
	memcpy(bad, buf, n);
	((Elf64_Ehdr *)bad)->e_phoff = ~0ull - 8;
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, -1);
	memcpy(bad, buf, n);
	((Elf64_Ehdr *)bad)->e_phnum = 0xffff;
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, -1);
	/* segments pointing outside the file: parsed as absent */
	memcpy(bad, buf, n);
	Elf64_Phdr *ph = (Elf64_Phdr *)(bad + sizeof(Elf64_Ehdr));
	ph[1].p_offset = ~0ull - 4;
	ph[2].p_filesz = ~0ull;
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, 0);
	CHECK(!e.interp[0] && e.nneeded == 0);
	/* an interpreter without its NUL, a string table past the end */
	memcpy(bad, buf, n);
	ph = (Elf64_Phdr *)(bad + sizeof(Elf64_Ehdr));
	ph[1].p_filesz = 3;
	ph[0].p_filesz = 64; /* the string table's vaddr is outside every LOAD */
	CHECK_INT(warm_elf_parse(bad, n, &e), ==, 0);
	CHECK(!e.interp[0] && e.nneeded == 0);
}

TEST(lookup_in_path)
{
	char dir[] = "/tmp/msb-warmpath-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char a[64], b[64], fa[96], fb[96], fifo[96], out[256], path[200];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	mkdir(a, 0700);
	mkdir(b, 0700);
	snprintf(fa, sizeof(fa), "%s/tool", a);
	snprintf(fb, sizeof(fb), "%s/tool", b);
	put_file(fa, "data", 4, 0600); /* not executable: skipped */
	put_file(fb,
		 "\x7f"
		 "ELF",
		 4, 0700);
	snprintf(fifo, sizeof(fifo), "%s/pipe", b);
	CHECK_INT(mkfifo(fifo, 0700), ==, 0);
	snprintf(path, sizeof(path), "relative:%s:%s", a, b);
	CHECK_INT(warm_lookup("tool", path, out, sizeof(out)), ==, 0);
	CHECK(strcmp(out, fb) == 0);
	CHECK_INT(warm_lookup("pipe", path, out, sizeof(out)), ==, -1);
	CHECK_INT(warm_lookup("none", path, out, sizeof(out)), ==, -1);
	CHECK_INT(warm_lookup(fb, NULL, out, sizeof(out)), ==, 0);
	CHECK_INT(warm_lookup("a/tool", path, out, sizeof(out)), ==, -1);
	/* warm_programs reads what it finds and never blocks on a FIFO */
	char names[2][256];
	snprintf(names[0], 256, "tool");
	snprintf(names[1], 256, "%s", fifo);
	struct warm_stats st;
	warm_programs((const char(*)[256])names, 2, path, &st);
	CHECK_INT(st.files, ==, 1);
	CHECK_INT(st.bytes, ==, 4);
	struct msb_err err = {0};
	msb_remove_tree(dir, &err);
}

/* A warm snapshot directory as msb writes it. */
static void make_warm(const char *root, const char *base_dir, const char *digest,
		      const char *rootfs, char key[17])
{
	struct msb_err err = {0};
	const char *slash = strrchr(base_dir, '/');
	if (sandbox_warm_key(slash + 1, digest, rootfs, key, &err) < 0)
		abort();
	char d[256], f[300];
	snprintf(d, sizeof(d), "%s/%s", root, key);
	mkdir(d, 0700);
	snprintf(f, sizeof(f), "%s/state", d);
	put_file(f, "s", 1, 0600);
	snprintf(f, sizeof(f), "%s/memory", d);
	put_file(f, "m", 1, 0600);
	snprintf(f, sizeof(f), "%s/meta", d);
	struct sandbox_snapmeta m = {.name = key,
				     .source = (char *)base_dir,
				     .image = "busybox",
				     .digest = (char *)digest,
				     .rootfs = (char *)rootfs};
	if (sandbox_snapmeta_write(f, &m, &err) < 0)
		abort();
}

static bool exists(const char *root, const char *name)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/%s", root, name);
	return access(p, F_OK) == 0;
}

TEST(prune_removes_stale_warm_snapshots)
{
	char top[] = "/tmp/msb-warmprune-XXXXXX";
	CHECK(mkdtemp(top) != NULL);
	char base[64], warm[64], home[64], bdir[96], gone_base[96], rootfs[96], rootfs2[96], f[128];
	snprintf(base, sizeof(base), "%s/base", top);
	snprintf(warm, sizeof(warm), "%s/warm", top);
	snprintf(home, sizeof(home), "%s/home", top);
	mkdir(base, 0700);
	mkdir(warm, 0700);
	mkdir(home, 0700);
	setenv("MICROSANDBOX_HOME", home, 1);
	setenv("MSB_BASE_SNAPSHOTS", base, 1);
	setenv("MSB_WARM_SNAPSHOTS", warm, 1);
	/* a base directory (kept or not, the warm judgement only needs its files) */
	snprintf(bdir, sizeof(bdir), "%s/00000000000000aa", base);
	snprintf(gone_base, sizeof(gone_base), "%s/00000000000000bb", base);
	mkdir(bdir, 0700);
	snprintf(f, sizeof(f), "%s/state", bdir);
	put_file(f, "s", 1, 0600);
	snprintf(f, sizeof(f), "%s/memory", bdir);
	put_file(f, "m", 1, 0600);
	snprintf(rootfs, sizeof(rootfs), "%s/a.erofs", top);
	snprintf(rootfs2, sizeof(rootfs2), "%s/b.erofs", top);
	put_file(rootfs, "r", 1, 0600);
	put_file(rootfs2, "r", 1, 0600);
	char cur[17], nobase[17], repulled[17], deleted[17];
	make_warm(warm, bdir, "sha256:1", rootfs, cur);
	make_warm(warm, gone_base, "sha256:2", rootfs, nobase);
	make_warm(warm, bdir, "sha256:3", rootfs2, repulled);
	put_file(rootfs2, "rr", 2, 0600); /* the image's root filesystem changed */
	char rootfs3[96];
	snprintf(rootfs3, sizeof(rootfs3), "%s/c.erofs", top);
	put_file(rootfs3, "r", 1, 0600);
	make_warm(warm, bdir, "sha256:4", rootfs3, deleted);
	unlink(rootfs3);
	struct sandbox_prune_opts o = {0};
	struct sandbox_prune_totals tot;
	struct msb_err err = {0};
	CHECK_INT(sandbox_snapshot_prune(&o, &tot, &err), ==, 0);
	CHECK_INT(tot.kept_warm, ==, 1);
	CHECK(exists(warm, cur));
	CHECK(!exists(warm, nobase) && !exists(warm, repulled) && !exists(warm, deleted));
	msb_remove_tree(top, &err);
	unsetenv("MSB_WARM_SNAPSHOTS");
	unsetenv("MSB_BASE_SNAPSHOTS");
}

TEST_MAIN(T(warm_key_changes_with_what_makes_it_valid), T(warm_key_of_a_real_file),
	  T(warm_root_and_wanted), T(warm_programs_of_a_run), T(setup_warm_fields_on_the_wire),
	  T(elf_dependencies), T(elf_hostile_input), T(lookup_in_path),
	  T(prune_removes_stale_warm_snapshots))
