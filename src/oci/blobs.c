/* Concurrent, resumable, verified blob downloads (curl multi). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "oci/digest.h"
#include "oci/registry.h"

enum xstate { X_PENDING, X_ACTIVE, X_DONE };

struct xfer {
	struct oci_fetch *f;
	enum xstate state;
	CURL *easy;
	struct curl_slist *hdrs;
	int fd; /* the partial file, locked */
	struct oci_hasher *h;
	uint64_t offset;      /* bytes in the file, all hashed */
	uint64_t range_start; /* what this request asked for */
	bool body_started, discard, too_big, bad_range, io_error;
	long status;
	char www_auth[2048];
	char content_range[128];
	char retry_after[32];
	int attempts, auth_rounds;
	long long not_before;
	char ebuf[CURL_ERROR_SIZE];
};

static size_t x_header(char *p, size_t sz, size_t nm, void *ud)
{
	struct xfer *x = ud;
	size_t n = sz * nm;
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		x->www_auth[0] = x->content_range[0] = x->retry_after[0] = '\0';
		return n;
	}
	const char *names[] = {"WWW-Authenticate", "Content-Range", "Retry-After"};
	char *dst[] = {x->www_auth, x->content_range, x->retry_after};
	size_t cap[] = {sizeof(x->www_auth), sizeof(x->content_range), sizeof(x->retry_after)};
	for (int i = 0; i < 3; i++) {
		size_t k = strlen(names[i]);
		if (n > k + 1 && strncasecmp(p, names[i], k) == 0 && p[k] == ':') {
			const char *v = p + k + 1;
			size_t vl = n - k - 1;
			while (vl && (*v == ' ' || *v == '\t'))
				v++, vl--;
			while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
				vl--;
			if (vl >= cap[i])
				vl = cap[i] - 1;
			memcpy(dst[i], v, vl);
			dst[i][vl] = '\0';
		}
	}
	return n;
}

static size_t x_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct xfer *x = ud;
	size_t n = sz * nm;
	if (!x->body_started) {
		x->body_started = true;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
		if (x->status == 206) {
			/* Resume only where we asked; anything else starts over. */
			unsigned long long a = 0;
			if (sscanf(x->content_range, "bytes %llu-", &a) != 1 ||
			    a != x->range_start) {
				x->bad_range = true;
				return 0;
			}
		} else if (x->status == 200) {
			if (x->offset > 0) {
				if (ftruncate(x->fd, 0) < 0) {
					x->io_error = true;
					return 0;
				}
				oci_hasher_reset(x->h);
				x->offset = 0;
			}
		} else {
			x->discard = true;
		}
	}
	if (x->discard)
		return n;
	if (x->offset + n > x->f->size) {
		x->too_big = true;
		return 0;
	}
	size_t off = 0;
	while (off < n) {
		ssize_t w = pwrite(x->fd, p + off, n - off, (off_t)(x->offset + off));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			x->io_error = true;
			return 0;
		}
		off += (size_t)w;
	}
	oci_hasher_update(x->h, p, n);
	x->offset += n;
	x->f->done = x->offset;
	return n;
}

static int start(struct oci_registry *r, CURLM *m, struct xfer *x, struct msb_err *err)
{
	char url[1200];
	snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", oci_registry_base(r), r->repository,
		 x->f->digest);
	if (!x->easy)
		x->easy = curl_easy_init();
	if (!x->easy)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "libcurl could not start");
	curl_easy_reset(x->easy);
	oci_registry_setup_easy(r, x->easy, url);
	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->ebuf);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, x_write);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, x_header);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_slist_free_all(x->hdrs);
	x->hdrs = oci_registry_headers(r, NULL);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
	x->range_start = x->offset;
	if (x->offset > 0) {
		char range[64];
		snprintf(range, sizeof(range), "%" PRIu64 "-", x->offset);
		curl_easy_setopt(x->easy, CURLOPT_RANGE, range);
		x->f->resumed = true;
		msb_debug("resuming %s at byte %" PRIu64, x->f->digest, x->offset);
	}
	x->body_started = x->discard = x->too_big = x->bad_range = x->io_error = false;
	x->status = 0;
	x->ebuf[0] = '\0';
	if (curl_multi_add_handle(m, x->easy) != CURLM_OK)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "libcurl refused a transfer");
	x->state = X_ACTIVE;
	return 0;
}

/* Verify and publish a complete partial file.  -1 (corrupt) removes it. */
static int finish(struct xfer *x, struct msb_err *err)
{
	char got[OCI_DIGEST_MAX + 1];
	oci_hasher_final(x->h, got);
	if (strcmp(got, x->f->digest) != 0) {
		unlink(x->f->partial);
		return msb_err_set(
			err, MSB_EK_CORRUPT, 0,
			"blob %s failed verification: its content hashes to %s; nothing "
			"was stored (the registry or something between is corrupting data)",
			x->f->digest, got);
	}
	if (fsync(x->fd) < 0)
		return msb_err_sys(err, "syncing %s", x->f->partial);
	if (rename(x->f->partial, x->f->dest) < 0)
		return msb_err_sys(err, "moving %s into the store", x->f->partial);
	x->f->finished = true;
	x->state = X_DONE;
	return 0;
}

/* Open and lock the partial file; hash what an earlier attempt left there. */
static int prepare(struct xfer *x, struct msb_err *err)
{
	x->fd = open(x->f->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (x->fd < 0)
		return msb_err_sys(err, "creating %s", x->f->partial);
	if (flock(x->fd, LOCK_EX | LOCK_NB) < 0) {
		msb_info("waiting for another process downloading %s", x->f->digest);
		if (flock(x->fd, LOCK_EX) < 0)
			return msb_err_sys(err, "locking %s", x->f->partial);
	}
	if (access(x->f->dest, F_OK) == 0) {
		/* Someone else finished it while we waited. */
		x->f->finished = x->f->skipped = true;
		x->f->done = x->f->size;
		x->state = X_DONE;
		return 0;
	}
	struct stat st;
	if (fstat(x->fd, &st) < 0)
		return msb_err_sys(err, "stat %s", x->f->partial);
	if (st.st_nlink == 0) {
		/* Renamed away by the process we waited for, under a name we do not see yet. */
		close(x->fd);
		x->fd = -1;
		return prepare(x, err);
	}
	uint64_t have = (uint64_t)st.st_size;
	if (have > x->f->size) {
		if (ftruncate(x->fd, 0) < 0)
			return msb_err_sys(err, "truncating %s", x->f->partial);
		have = 0;
	}
	if (have > 0 && oci_sha256_fd(x->fd, have, x->h, &x->offset, err) < 0)
		return -1;
	x->f->done = x->offset;
	if (x->offset > 0)
		x->f->resumed = true;
	if (x->offset > 0 && x->offset == x->f->size) {
		int r = finish(x, err);
		if (r < 0 && err->kind == MSB_EK_CORRUPT) {
			/* A bad leftover is not fatal (finish() removed it): fetch it again. */
			msb_info("discarding a bad partial download of %s", x->f->digest);
			close(x->fd);
			x->fd = -1;
			x->offset = 0;
			x->f->done = 0;
			x->f->resumed = false;
			return prepare(x, err);
		}
		return r;
	}
	return 0;
}

/* A transfer ended.  0: done or rescheduled; -1: fatal. */
static int on_done(struct oci_registry *r, CURLM *m, struct xfer *x, CURLcode rc,
		   struct msb_err *err)
{
	curl_multi_remove_handle(m, x->easy);
	x->state = X_PENDING;
	long status = 0;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (x->too_big) {
		unlink(x->f->partial);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "blob %s is larger than the %" PRIu64
				   " bytes its manifest declares; nothing was stored",
				   x->f->digest, x->f->size);
	}
	if (x->io_error)
		return msb_err_sys(err, "writing %s", x->f->partial);
	if (x->bad_range) {
		/* The server resumed somewhere else: start from zero. */
		if (ftruncate(x->fd, 0) < 0)
			return msb_err_sys(err, "truncating %s", x->f->partial);
		oci_hasher_reset(x->h);
		x->offset = 0;
		x->attempts++;
		return 0;
	}
	if (rc == CURLE_OK && status == 401 && x->auth_rounds < 2 && x->www_auth[0]) {
		x->auth_rounds++;
		return oci_registry_authenticate(r, x->www_auth, err);
	}
	if (rc == CURLE_OK && status == 416 && x->offset == x->f->size)
		return finish(x, err);
	if (rc == CURLE_OK && status == 416) {
		unlink(x->f->partial);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "blob %s: the registry has only %" PRIu64
				   " bytes of it but the manifest declares %" PRIu64
				   "; nothing was stored",
				   x->f->digest, x->offset, x->f->size);
	}
	if (rc == CURLE_OK && (status == 200 || status == 206) && x->offset == x->f->size)
		return finish(x, err);
	if (rc == CURLE_OK && (status == 200 || status == 206)) {
		/* The server finished its answer cleanly and the blob is still short. */
		unlink(x->f->partial);
		return msb_err_set(err, MSB_EK_CORRUPT, 0,
				   "blob %s: the registry has only %" PRIu64
				   " bytes of it but the manifest declares %" PRIu64
				   "; nothing was stored",
				   x->f->digest, x->offset, x->f->size);
	}
	bool retry = rc != CURLE_OK || status == 429 || status == 408 || status >= 500;
	if (rc == CURLE_OK && status == 404)
		return msb_err_set(err, MSB_EK_NOT_FOUND, 0,
				   "blob %s is missing from the registry %s", x->f->digest,
				   r->registry);
	if (!retry)
		return msb_err_set(err,
				   rc == CURLE_OK && (status == 401 || status == 403)
					   ? MSB_EK_USAGE
					   : MSB_EK_NETWORK,
				   0, "fetching blob %s: HTTP %ld", x->f->digest, status);
	if (++x->attempts >= r->max_attempts)
		return msb_err_set(err, MSB_EK_NETWORK, 0,
				   "fetching blob %s: %s (gave up after %d attempts; run the pull "
				   "again to resume)",
				   x->f->digest,
				   rc != CURLE_OK ? (x->ebuf[0] ? x->ebuf : curl_easy_strerror(rc))
						  : "the server failed",
				   x->attempts);
	long delay = oci_retry_delay(r, x->attempts, status, x->retry_after);
	msb_info("blob %s: %s; retrying from byte %" PRIu64 " in %ld ms", x->f->digest,
		 rc != CURLE_OK ? curl_easy_strerror(rc) : "server error", x->offset, delay);
	x->not_before = msb_now_ms() + delay;
	return 0;
}

int oci_registry_fetch(struct oci_registry *r, struct oci_fetch *items, size_t n,
		       oci_progress_fn progress, void *ctx, struct msb_err *err)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			if (strcmp(items[i].digest, items[j].digest) == 0)
				return msb_err_set(err, MSB_EK_INTERNAL, 0,
						   "blob %s listed twice in one fetch",
						   items[i].digest);
	struct xfer *xs = calloc(n ? n : 1, sizeof(*xs));
	CURLM *m = curl_multi_init();
	int ret = -1;
	if (!xs || !m) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		xs[i].fd = -1;
		xs[i].f = &items[i];
		items[i].done = 0;
		items[i].finished = items[i].skipped = items[i].resumed = false;
	}
	/* Lock in digest order so that two pulls sharing blobs cannot deadlock. */
	for (;;) {
		struct xfer *next = NULL;
		for (size_t i = 0; i < n; i++)
			if (xs[i].fd < 0 && xs[i].state != X_DONE &&
			    (!next || strcmp(xs[i].f->digest, next->f->digest) < 0))
				next = &xs[i];
		if (!next)
			break;
		if (access(next->f->dest, F_OK) == 0) {
			next->f->finished = next->f->skipped = true;
			next->f->done = next->f->size;
			next->state = X_DONE;
			continue;
		}
		next->h = oci_hasher_new();
		if (!next->h) {
			msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			goto out;
		}
		if (prepare(next, err) < 0)
			goto out;
		if (next->fd < 0)
			next->state = X_DONE; /* defensive; prepare sets fd otherwise */
	}
	if (progress)
		progress(ctx, items, n);
	long long last_progress = msb_now_ms();
	int max_active = r->settings->max_concurrent > 0 ? r->settings->max_concurrent : 4;
	for (;;) {
		int active = 0, pending = 0;
		long long now = msb_now_ms();
		for (size_t i = 0; i < n; i++) {
			struct xfer *x = &xs[i];
			if (x->state == X_ACTIVE)
				active++;
		}
		for (size_t i = 0; i < n; i++) {
			struct xfer *x = &xs[i];
			if (x->state != X_PENDING)
				continue;
			pending++;
			if (active < max_active && x->not_before <= now) {
				if (start(r, m, x, err) < 0)
					goto out;
				active++;
			}
		}
		if (active == 0 && pending == 0)
			break;
		int running;
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			if (on_done(r, m, x, msg->data.result, err) < 0)
				goto out;
		}
		curl_multi_poll(m, NULL, 0, 100, NULL);
		if (progress && msb_now_ms() - last_progress >= 100) {
			progress(ctx, items, n);
			last_progress = msb_now_ms();
		}
	}
	if (progress)
		progress(ctx, items, n);
	ret = 0;
out:
	for (size_t i = 0; xs && i < n; i++) {
		if (xs[i].easy) {
			if (xs[i].state == X_ACTIVE)
				curl_multi_remove_handle(m, xs[i].easy);
			curl_easy_cleanup(xs[i].easy);
		}
		curl_slist_free_all(xs[i].hdrs);
		oci_hasher_free(xs[i].h);
		if (xs[i].fd >= 0)
			close(xs[i].fd);
	}
	if (m)
		curl_multi_cleanup(m);
	free(xs);
	return ret;
}
