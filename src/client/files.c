/* libmicrosandbox: files over the raw route PUT/GET /api/v1/sandbox/file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/internal.h"

char *msbci_file_path(msbc_client *c, const char *name, const char *path, int mode)
{
	char *n = curl_easy_escape(c->curl, name, 0);
	char *p = curl_easy_escape(c->curl, path, 0);
	char *out = NULL;
	if (n && p) {
		size_t len = strlen(n) + strlen(p) + 64;
		out = malloc(len);
		if (out && mode >= 0)
			snprintf(out, len, "/api/v1/sandbox/file?sandbox=%s&path=%s&mode=%04o", n,
				 p, (unsigned)mode & 07777);
		else if (out)
			snprintf(out, len, "/api/v1/sandbox/file?sandbox=%s&path=%s", n, p);
	}
	curl_free(n);
	curl_free(p);
	return out;
}

struct mem_src {
	const char *p;
	size_t left;
};

static size_t read_mem(char *dst, size_t size, size_t nmemb, void *ud)
{
	struct mem_src *m = ud;
	size_t n = size * nmemb < m->left ? size * nmemb : m->left;
	memcpy(dst, m->p, n);
	m->p += n;
	m->left -= n;
	return n;
}

static size_t read_file(char *dst, size_t size, size_t nmemb, void *ud)
{
	size_t n = fread(dst, 1, size * nmemb, ud);
	return ferror((FILE *)ud) ? CURL_READFUNC_ABORT : n;
}

static size_t to_buf(char *data, size_t size, size_t nmemb, void *ud)
{
	return msbci_buf_add(ud, data, size * nmemb) == 0 ? size * nmemb : 0;
}

/* One PUT of `len` bytes from `src` through `reader`. */
static int put(msbc_client *c, const char *name, const char *path, int mode,
	       curl_read_callback reader, void *src, curl_off_t len, const char *context)
{
	msbci_clear(c);
	char *url = msbci_file_path(c, name, path, mode);
	if (!url)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	struct curl_slist *hdrs;
	int rc = msbci_prepare(c, "PUT", url, -1, "application/octet-stream", &hdrs);
	free(url);
	if (rc < 0)
		return rc;
	/* an upload may take long; the server enforces its own idle limit */
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L);
	/* refused requests (bad path, no sandbox) are answered before the body */
	struct curl_slist *h2 = curl_slist_append(hdrs, "Expect: 100-continue");
	if (h2)
		hdrs = h2;
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
	struct msbci_buf resp = {0};
	curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, reader);
	curl_easy_setopt(c->curl, CURLOPT_READDATA, src);
	curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, len);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &resp);
	CURLcode crc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	long http = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
	if (crc != CURLE_OK && !(http >= 400 && resp.n)) {
		msbci_buf_free(&resp);
		return msbci_fail_curl(c, crc, context);
	}
	rc = 0;
	if (http < 200 || http >= 300)
		rc = msbci_fail_reply(c, http, resp.p, resp.n, context, 1);
	c->http_status = (int)http;
	msbci_buf_free(&resp);
	return rc;
}

int msbc_file_write(msbc_client *c, const char *name, const char *path, const void *data,
		    size_t len, int mode)
{
	if (!c || !name || !path || (len && !data))
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_file_write: a required argument is NULL")
			 : MSBC_E_USAGE;
	char ctx[300];
	snprintf(ctx, sizeof(ctx), "Failed to write %s", path);
	struct mem_src m = {data, len};
	return put(c, name, path, mode, read_mem, &m, (curl_off_t)len, ctx);
}

int msbc_file_upload(msbc_client *c, const char *name, const char *local_path, const char *path,
		     int mode)
{
	if (!c || !name || !path || !local_path)
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_file_upload: a required argument is NULL")
			 : MSBC_E_USAGE;
	FILE *f = fopen(local_path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) < 0) {
		int e = errno;
		if (f)
			fclose(f);
		return msbci_fail(c, MSBC_E_IO, "Failed to upload %s: %s", local_path, strerror(e));
	}
	char ctx[300];
	snprintf(ctx, sizeof(ctx), "Failed to upload %s to %s", local_path, path);
	if (mode < 0)
		mode = (int)(st.st_mode & 07777);
	int rc = put(c, name, path, mode, read_file, f, (curl_off_t)st.st_size, ctx);
	fclose(f);
	return rc;
}

struct sink {
	msbc_client *c;
	FILE *f;	      /* download target, or NULL: memory */
	struct msbci_buf mem; /* the file (memory) or an error reply */
	int checked, ok;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t len = size * nmemb;
	if (!s->checked) {
		long http = 0;
		curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &http);
		s->ok = http == 200;
		s->checked = 1;
	}
	if (s->ok && s->f)
		return fwrite(data, 1, len, s->f);
	return msbci_buf_add(&s->mem, data, len) == 0 ? len : 0;
}

static int get(msbc_client *c, const char *name, const char *path, struct sink *s,
	       const char *context)
{
	msbci_clear(c);
	char *url = msbci_file_path(c, name, path, -1);
	if (!url)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	struct curl_slist *hdrs;
	int rc = msbci_prepare(c, "GET", url, -1, NULL, &hdrs);
	free(url);
	if (rc < 0)
		return rc;
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, s);
	CURLcode crc = curl_easy_perform(c->curl);
	curl_slist_free_all(hdrs);
	long http = 0;
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
	c->http_status = (int)http;
	if (crc != CURLE_OK)
		return msbci_fail_curl(c, crc, context);
	if (http != 200)
		return msbci_fail_reply(c, http, s->mem.p, s->mem.n, context, 1);
	return 0;
}

int msbc_file_read(msbc_client *c, const char *name, const char *path, void **data, size_t *len)
{
	if (!c || !name || !path || !data || !len)
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_file_read: a required argument is NULL")
			 : MSBC_E_USAGE;
	*data = NULL;
	*len = 0;
	char ctx[300];
	snprintf(ctx, sizeof(ctx), "Failed to read %s", path);
	struct sink s = {.c = c};
	int rc = get(c, name, path, &s, ctx);
	if (rc == 0 && !s.mem.p && msbci_buf_add(&s.mem, "", 0) < 0)
		rc = msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	if (rc < 0) {
		msbci_buf_free(&s.mem);
		return rc;
	}
	*data = s.mem.p;
	*len = s.mem.n;
	return 0;
}

int msbc_file_download(msbc_client *c, const char *name, const char *path, const char *local_path)
{
	if (!c || !name || !path || !local_path)
		return c ? msbci_fail(c, MSBC_E_USAGE,
				      "msbc_file_download: a required argument is NULL")
			 : MSBC_E_USAGE;
	size_t n = strlen(local_path) + 8;
	char *tmp = malloc(n);
	if (!tmp)
		return msbci_fail(c, MSBC_E_NOMEM, "out of memory");
	snprintf(tmp, n, "%s.part", local_path);
	struct sink s = {.c = c, .f = fopen(tmp, "wb")};
	if (!s.f) {
		int e = errno;
		free(tmp);
		return msbci_fail(c, MSBC_E_IO, "Failed to download %s: %s: %s", path, local_path,
				  strerror(e));
	}
	char ctx[300];
	snprintf(ctx, sizeof(ctx), "Failed to download %s", path);
	int rc = get(c, name, path, &s, ctx);
	if (fclose(s.f) != 0 && rc == 0)
		rc = msbci_fail(c, MSBC_E_IO, "%s: writing %s failed", ctx, local_path);
	if (rc == 0 && rename(tmp, local_path) < 0)
		rc = msbci_fail(c, MSBC_E_IO, "%s: %s: %s", ctx, local_path, strerror(errno));
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	msbci_buf_free(&s.mem);
	return rc;
}
