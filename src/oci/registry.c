#include "oci/registry.h"

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "oci/digest.h"
#include "oci/manifest.h"

#define TOKEN_MAX_BYTES (1u << 20)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int oci_parse_challenge(const char *h, struct oci_challenge *out)
{
	memset(out, 0, sizeof(*out));
	while (*h == ' ' || *h == '\t')
		h++;
	size_t n = 0;
	while (h[n] && h[n] != ' ' && h[n] != '\t')
		n++;
	if (n == 0 || n >= sizeof(out->scheme))
		return -1;
	memcpy(out->scheme, h, n);
	h += n;
	for (;;) {
		while (*h == ' ' || *h == '\t' || *h == ',')
			h++;
		if (!*h)
			break;
		const char *k = h;
		while (*h && *h != '=' && *h != ',' && *h != ' ')
			h++;
		size_t klen = (size_t)(h - k);
		if (*h != '=')
			return -1;
		h++;
		char val[1024];
		size_t vlen = 0;
		if (*h == '"') {
			h++;
			while (*h && *h != '"') {
				if (*h == '\\' && h[1])
					h++;
				if (vlen + 1 >= sizeof(val))
					return -1;
				val[vlen++] = *h++;
			}
			if (*h != '"')
				return -1;
			h++;
		} else {
			while (*h && *h != ',' && *h != ' ') {
				if (vlen + 1 >= sizeof(val))
					return -1;
				val[vlen++] = *h++;
			}
		}
		val[vlen] = '\0';
		char *dst = NULL;
		size_t cap = 0;
		if (klen == 5 && strncasecmp(k, "realm", 5) == 0) {
			dst = out->realm;
			cap = sizeof(out->realm);
		} else if (klen == 7 && strncasecmp(k, "service", 7) == 0) {
			dst = out->service;
			cap = sizeof(out->service);
		} else if (klen == 5 && strncasecmp(k, "scope", 5) == 0) {
			dst = out->scope;
			cap = sizeof(out->scope);
		}
		if (dst) {
			if (vlen >= cap)
				return -1;
			memcpy(dst, val, vlen + 1);
		}
	}
	return 0;
}

static int add_endpoint(struct oci_registry *r, size_t *n, const char *url, struct msb_err *err)
{
	char **v = realloc(r->endpoints, (*n + 2) * sizeof(*v));
	if (!v)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	r->endpoints = v;
	v[*n] = strdup(url);
	if (!v[*n])
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	v[++*n] = NULL;
	return 0;
}

int oci_registry_open(struct oci_registry *r, const struct oci_settings *s,
		      const struct oci_ref *ref, struct msb_err *err)
{
	pthread_once(&curl_once, curl_init_once);
	memset(r, 0, sizeof(*r));
	r->settings = s;
	r->max_attempts = 5;
	r->backoff_ms = 250;
	snprintf(r->registry, sizeof(r->registry), "%s", ref->registry);
	snprintf(r->repository, sizeof(r->repository), "%s", ref->repository);
	size_t n = 0;
	char url[600];
	if (strcmp(ref->registry, "docker.io") == 0) {
		for (char **m = s->mirrors; m && *m && n < 32; m++)
			if (add_endpoint(r, &n, *m, err) < 0)
				goto fail;
		snprintf(url, sizeof(url), "https://registry-1.docker.io");
	} else if (oci_settings_insecure(s, ref->registry)) {
		snprintf(url, sizeof(url), "https://%s", ref->registry);
		r->noverify |= 1ull << n;
		if (add_endpoint(r, &n, url, err) < 0)
			goto fail;
		snprintf(url, sizeof(url), "http://%s", ref->registry);
	} else {
		snprintf(url, sizeof(url), "https://%s", ref->registry);
	}
	if (add_endpoint(r, &n, url, err) < 0)
		goto fail;
	return 0;
fail:
	oci_registry_close(r);
	return -1;
}

void oci_registry_close(struct oci_registry *r)
{
	oci_strv_free(r->endpoints);
	free(r->authz);
	free(r->user);
	if (r->pass) {
		explicit_bzero(r->pass, strlen(r->pass));
		free(r->pass);
	}
	memset(r, 0, sizeof(*r));
}

const char *oci_registry_base(const struct oci_registry *r)
{
	return r->endpoints[r->endpoint];
}

/* Loopback registries are never reached through a proxy, whatever the environment says
 * (libcurl reads http_proxy/https_proxy/no_proxy; CURLOPT_NOPROXY replaces no_proxy). */
static char no_proxy[2048];
static pthread_once_t no_proxy_once = PTHREAD_ONCE_INIT;
static void no_proxy_init(void)
{
	const char *env = getenv("no_proxy");
	if (!env || !*env)
		env = getenv("NO_PROXY");
	snprintf(no_proxy, sizeof(no_proxy), "%s%slocalhost,127.0.0.0/8,::1", env ? env : "",
		 env && *env ? "," : "");
}

/* host[:port] of an http(s) URL into buf ("" when it has none). */
static void url_host(const char *url, char *buf, size_t len)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t n = strcspn(p, "/?#");
	const char *at = memchr(p, '@', n);
	if (at) {
		n -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (n >= len)
		n = len - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
}

void oci_registry_setup_easy(const struct oci_registry *r, void *curl, const char *url)
{
	CURL *c = curl;
	if (strncmp(url, "https://", 8) == 0) {
		/* An insecure or loopback host (the registry, or its token server) is not
		 * held to its certificate; every blob is still checked by digest. */
		char host[OCI_NAME_MAX + 1];
		url_host(url, host, sizeof(host));
		if (oci_settings_insecure(r->settings, host)) {
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		}
	}
	pthread_once(&no_proxy_once, no_proxy_init);
	curl_easy_setopt(c, CURLOPT_NOPROXY, no_proxy);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	/* Never hand credentials to the host a redirect points at. */
	curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
	/* A stalled transfer (under 1 byte/s for 30 s) is a failure, retried. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "microsandbox/0.1 (+libcurl)");
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "identity");
}

struct curl_slist *oci_registry_headers(const struct oci_registry *r, const char *accept)
{
	struct curl_slist *h = NULL;
	char line[1024];
	if (accept) {
		snprintf(line, sizeof(line), "Accept: %s", accept);
		h = curl_slist_append(h, line);
	}
	if (r->authz)
		h = curl_slist_append(h, r->authz);
	return h;
}

struct resp {
	char *body;
	size_t len, cap, limit;
	bool too_big;
	long status;
	char content_type[128];
	char www_auth[2048];
	char retry_after[32];
	char docker_digest[OCI_DIGEST_MAX + 1];
};

static size_t resp_write(char *p, size_t sz, size_t nm, void *ud)
{
	struct resp *rs = ud;
	size_t n = sz * nm;
	if (rs->len + n > rs->limit) {
		rs->too_big = true;
		return 0;
	}
	if (rs->len + n + 1 > rs->cap) {
		size_t cap = rs->cap ? rs->cap : 4096;
		while (cap < rs->len + n + 1)
			cap *= 2;
		char *b = realloc(rs->body, cap);
		if (!b)
			return 0;
		rs->body = b;
		rs->cap = cap;
	}
	memcpy(rs->body + rs->len, p, n);
	rs->len += n;
	rs->body[rs->len] = '\0';
	return n;
}

static void header_value(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
	size_t k = strlen(name);
	if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return;
	const char *v = line + k + 1;
	size_t vl = n - k - 1;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	if (vl >= cap)
		vl = cap - 1;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

static size_t resp_header(char *p, size_t sz, size_t nm, void *ud)
{
	struct resp *rs = ud;
	size_t n = sz * nm;
	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		/* A new response (after a redirect): forget the previous one's headers. */
		rs->content_type[0] = rs->www_auth[0] = rs->docker_digest[0] = '\0';
		rs->retry_after[0] = '\0';
		return n;
	}
	header_value(p, n, "Content-Type", rs->content_type, sizeof(rs->content_type));
	header_value(p, n, "WWW-Authenticate", rs->www_auth, sizeof(rs->www_auth));
	header_value(p, n, "Docker-Content-Digest", rs->docker_digest, sizeof(rs->docker_digest));
	header_value(p, n, "Retry-After", rs->retry_after, sizeof(rs->retry_after));
	return n;
}

static bool transient(CURLcode rc, long status)
{
	if (rc != CURLE_OK)
		return rc != CURLE_WRITE_ERROR && rc != CURLE_UNSUPPORTED_PROTOCOL &&
		       rc != CURLE_URL_MALFORMAT && rc != CURLE_TOO_MANY_REDIRECTS &&
		       rc != CURLE_PEER_FAILED_VERIFICATION && rc != CURLE_SSL_CACERT_BADFILE &&
		       rc != CURLE_SSL_CONNECT_ERROR; /* e.g. TLS to a plain-HTTP port */
	return status == 429 || status == 408 || (status >= 500 && status <= 599);
}

long oci_retry_delay(const struct oci_registry *r, int attempt, long status,
		     const char *retry_after)
{
	long delay = r->backoff_ms << (attempt > 1 ? attempt - 1 : 0);
	/* 429/503 may say how long to wait (in seconds; the HTTP-date form is ignored). */
	if ((status == 429 || status == 503) && retry_after && *retry_after) {
		char *end;
		long secs = strtol(retry_after, &end, 10);
		if (end != retry_after && *end == '\0' && secs > 0)
			delay = secs > 60 ? 60000 : (secs * 1000 > delay ? secs * 1000 : delay);
	}
	return delay;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0)
		;
}

/* One GET with retries.  basic_user/pass: send Basic credentials (token endpoint). */
static int http_get(struct oci_registry *r, const char *url, const char *accept, bool with_authz,
		    const char *user, const char *pass, size_t limit, struct resp *rs,
		    struct msb_err *err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "libcurl could not start");
	char ebuf[CURL_ERROR_SIZE];
	int ret = -1;
	for (int attempt = 1;; attempt++) {
		free(rs->body);
		memset(rs, 0, sizeof(*rs));
		rs->limit = limit;
		ebuf[0] = '\0';
		curl_easy_reset(c);
		oci_registry_setup_easy(r, c, url);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, resp_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, rs);
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, resp_header);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
		struct curl_slist *h = NULL;
		if (with_authz)
			h = oci_registry_headers(r, accept);
		else if (accept) {
			char line[1024];
			snprintf(line, sizeof(line), "Accept: %s", accept);
			h = curl_slist_append(h, line);
		}
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		if (user && pass) {
			curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(c, CURLOPT_USERNAME, user);
			curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
		}
		CURLcode rc = curl_easy_perform(c);
		curl_slist_free_all(h);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rs->status);
		if (rs->too_big) {
			msb_err_set(err, MSB_EK_CORRUPT, 0,
				    "%s: the response is larger than %zu bytes", url, limit);
			break;
		}
		if (!transient(rc, rs->status) || attempt >= r->max_attempts) {
			if (rc != CURLE_OK) {
				msb_err_set(err, MSB_EK_NETWORK, 0,
					    "%s: %s (after %d attempts); check the address and "
					    "your network",
					    url, ebuf[0] ? ebuf : curl_easy_strerror(rc), attempt);
				break;
			}
			ret = 0;
			break;
		}
		long delay = oci_retry_delay(r, attempt, rs->status, rs->retry_after);
		msb_debug("GET %s: %s (status %ld); retrying in %ld ms", url,
			  rc ? curl_easy_strerror(rc) : "server error", rs->status, delay);
		sleep_ms(delay);
	}
	curl_easy_cleanup(c);
	return ret;
}

static int load_creds(struct oci_registry *r, struct msb_err *err)
{
	if (r->creds_loaded)
		return 0;
	r->creds_loaded = true;
	return oci_creds_lookup(r->settings, r->registry, &r->user, &r->pass, err) < 0 ? -1 : 0;
}

static char *url_escape(const char *s)
{
	CURL *c = curl_easy_init();
	char *e = c ? curl_easy_escape(c, s, 0) : NULL;
	char *out = e ? strdup(e) : NULL;
	curl_free(e);
	if (c)
		curl_easy_cleanup(c);
	return out;
}

int oci_registry_authenticate(struct oci_registry *r, const char *challenge, struct msb_err *err)
{
	struct oci_challenge ch;
	if (oci_parse_challenge(challenge, &ch) < 0)
		return msb_err_set(err, MSB_EK_NETWORK, 0,
				   "%s asked for authentication with a malformed challenge",
				   r->registry);
	if (load_creds(r, err) < 0)
		return -1;
	free(r->authz);
	r->authz = NULL;
	if (strcasecmp(ch.scheme, "Basic") == 0) {
		if (!r->user)
			return msb_err_set(err, MSB_EK_USAGE, 0,
					   "%s requires a login; run `msb login %s`", r->registry,
					   r->registry);
		size_t n = strlen(r->user) + 1 + strlen(r->pass);
		_cleanup_free_ char *plain = malloc(n + 1);
		_cleanup_free_ char *b64 = malloc(4 * (n + 2) / 3 + 4);
		r->authz = malloc(4 * (n + 2) / 3 + 64);
		if (!plain || !b64 || !r->authz)
			return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		snprintf(plain, n + 1, "%s:%s", r->user, r->pass);
		EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, (int)n);
		explicit_bzero(plain, n);
		sprintf(r->authz, "Authorization: Basic %s", b64);
		return 0;
	}
	if (strcasecmp(ch.scheme, "Bearer") != 0)
		return msb_err_set(
			err, MSB_EK_NETWORK, 0,
			"%s asked for authentication scheme '%s', which is not supported",
			r->registry, ch.scheme);
	if (strncmp(ch.realm, "https://", 8) != 0 && strncmp(ch.realm, "http://", 7) != 0)
		return msb_err_set(err, MSB_EK_NETWORK, 0,
				   "%s sent a token realm that is not an http(s) URL", r->registry);
	char scope[600];
	if (ch.scope[0])
		snprintf(scope, sizeof(scope), "%s", ch.scope);
	else if (r->repository[0])
		snprintf(scope, sizeof(scope), "repository:%s:pull", r->repository);
	else
		scope[0] = '\0'; /* a login check: no repository */
	_cleanup_free_ char *es = url_escape(ch.service);
	_cleanup_free_ char *esc = url_escape(scope);
	if (!es || !esc)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	size_t ulen = strlen(ch.realm) + strlen(es) + strlen(esc) + 32;
	_cleanup_free_ char *url = malloc(ulen);
	if (!url)
		return msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
	snprintf(url, ulen, "%s%sservice=%s%s%s", ch.realm, strchr(ch.realm, '?') ? "&" : "?", es,
		 scope[0] ? "&scope=" : "", scope[0] ? esc : "");
	struct resp rs = {0};
	if (http_get(r, url, "application/json", false, r->user, r->pass, TOKEN_MAX_BYTES, &rs,
		     err) < 0)
		return msb_err_wrap(err, "getting a token for %s", r->registry);
	int ret = 0;
	if (rs.status == 401 || rs.status == 403) {
		ret = msb_err_set(err, MSB_EK_USAGE, 0,
				  "%s refused %s (HTTP %ld); run `msb login %s` with valid "
				  "credentials",
				  r->registry,
				  r->user ? "the stored credentials" : "anonymous access",
				  rs.status, r->registry);
	} else if (rs.status != 200) {
		ret = msb_err_set(err, MSB_EK_NETWORK, 0, "token server for %s answered HTTP %ld",
				  r->registry, rs.status);
	} else {
		json_t *j = json_loadb(rs.body ? rs.body : "", rs.len, 0, NULL);
		const char *tok = j ? json_string_value(json_object_get(j, "token")) : NULL;
		if (!tok || !*tok)
			tok = j ? json_string_value(json_object_get(j, "access_token")) : NULL;
		bool ok = tok && *tok && strlen(tok) < 16384;
		for (const char *p = tok; ok && *p; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
				ok = false;
		if (!ok) {
			ret = msb_err_set(err, MSB_EK_NETWORK, 0,
					  "the token server for %s sent no usable token",
					  r->registry);
		} else {
			size_t n = strlen(tok) + 32;
			r->authz = malloc(n);
			if (!r->authz)
				ret = msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
			else
				snprintf(r->authz, n, "Authorization: Bearer %s", tok);
		}
		if (j)
			json_decref(j);
	}
	free(rs.body);
	return ret;
}

void oci_doc_release(struct oci_doc *d)
{
	free(d->body);
	memset(d, 0, sizeof(*d));
}

/* The manifest from one endpoint.  1: not found there (try the next), 0: got it. */
static int manifest_from(struct oci_registry *r, const char *target, struct oci_doc *out,
			 struct msb_err *err)
{
	char url[1200];
	snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", oci_registry_base(r), r->repository,
		 target);
	struct resp rs = {0};
	for (int round = 0; round < 2; round++) {
		if (http_get(r, url, OCI_MANIFEST_ACCEPT, true, NULL, NULL, OCI_MANIFEST_MAX_BYTES,
			     &rs, err) < 0)
			goto fail;
		if (rs.status != 401 || round == 1)
			break;
		if (!rs.www_auth[0]) {
			msb_err_set(err, MSB_EK_NETWORK, 0,
				    "%s answered 401 without a WWW-Authenticate challenge", url);
			goto fail;
		}
		if (oci_registry_authenticate(r, rs.www_auth, err) < 0)
			goto fail;
	}
	if (rs.status == 404) {
		free(rs.body);
		msb_err_set(err, MSB_EK_NOT_FOUND, 0,
			    "%s/%s:%s was not found in the registry; check the name and tag",
			    r->registry, r->repository, target);
		return 1;
	}
	if (rs.status == 401 || rs.status == 403) {
		msb_err_set(
			err, MSB_EK_USAGE, 0,
			"%s denied access to %s (HTTP %ld); if it is private, run `msb login %s`",
			r->registry, r->repository, rs.status, r->registry);
		goto fail;
	}
	if (rs.status != 200) {
		msb_err_set(err, MSB_EK_NETWORK, 0, "%s answered HTTP %ld", url, rs.status);
		goto fail;
	}
	out->body = rs.body ? rs.body : strdup("");
	out->len = rs.len;
	snprintf(out->content_type, sizeof(out->content_type), "%s", rs.content_type);
	oci_sha256_buf(out->body, out->len, out->digest);
	if (oci_digest_valid(target) && strcmp(target, out->digest) != 0) {
		msb_err_set(err, MSB_EK_CORRUPT, 0,
			    "the registry sent a manifest whose digest is %s, not the %s asked for",
			    out->digest, target);
		oci_doc_release(out);
		return -1;
	}
	if (rs.docker_digest[0] && strcmp(rs.docker_digest, out->digest) != 0)
		msb_warn("%s: Docker-Content-Digest %s differs from the body's %s", url,
			 rs.docker_digest, out->digest);
	return 0;
fail:
	free(rs.body);
	return -1;
}

int oci_registry_get_manifest(struct oci_registry *r, const char *target, struct oci_doc *out,
			      struct msb_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t n = oci_strv_len(r->endpoints);
	for (size_t i = 0; i < n; i++) {
		if (i != r->endpoint) {
			/* A token is valid for the endpoint that issued it only. */
			free(r->authz);
			r->authz = NULL;
		}
		r->endpoint = i;
		/* A mirror that is down should not cost the full retry budget. */
		int saved = r->max_attempts;
		if (i + 1 < n && r->max_attempts > 2)
			r->max_attempts = 2;
		int rc = manifest_from(r, target, out, err);
		r->max_attempts = saved;
		if (rc == 0)
			return 0;
		bool last = i + 1 == n;
		if (last || err->kind == MSB_EK_CORRUPT)
			return -1;
		msb_info("%s failed (%s); trying %s", r->endpoints[i], err->msg,
			 r->endpoints[i + 1]);
	}
	return -1;
}

int oci_registry_check_login(const struct oci_settings *s, const char *registry, const char *user,
			     const char *pass, struct msb_err *err)
{
	struct oci_ref ref = {0};
	snprintf(ref.registry, sizeof(ref.registry), "%s", registry);
	struct oci_registry r;
	if (oci_registry_open(&r, s, &ref, err) < 0)
		return -1;
	r.user = strdup(user);
	r.pass = strdup(pass);
	r.creds_loaded = true;
	r.max_attempts = 2;
	int ret = -1;
	char url[700];
	struct resp rs = {0};
	if (!r.user || !r.pass) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "out of memory");
		goto out;
	}
	/* The registry itself (not a mirror): its last endpoint, or the one before when that
	 * is the HTTPS attempt of an insecure registry and answers. */
	size_t n = oci_strv_len(r.endpoints);
	r.endpoint = n - 1;
	if (n >= 2 && (r.noverify >> (n - 2)) & 1) {
		r.endpoint = n - 2;
		snprintf(url, sizeof(url), "%s/v2/", oci_registry_base(&r));
		struct msb_err probe = {0};
		if (http_get(&r, url, NULL, false, NULL, NULL, TOKEN_MAX_BYTES, &rs, &probe) < 0)
			r.endpoint = n - 1;
	}
	snprintf(url, sizeof(url), "%s/v2/", oci_registry_base(&r));
	for (int round = 0; round < 2; round++) {
		if (http_get(&r, url, NULL, true, NULL, NULL, TOKEN_MAX_BYTES, &rs, err) < 0)
			goto out;
		if (rs.status != 401 || round == 1)
			break;
		if (!rs.www_auth[0] || oci_registry_authenticate(&r, rs.www_auth, err) < 0) {
			if (!rs.www_auth[0])
				msb_err_set(err, MSB_EK_NETWORK, 0,
					    "%s answered 401 without a challenge", url);
			goto out;
		}
	}
	if (rs.status == 401 || rs.status == 403)
		msb_err_set(err, MSB_EK_USAGE, 0, "%s refused the credentials (HTTP %ld)", registry,
			    rs.status);
	else if (rs.status != 200)
		msb_err_set(err, MSB_EK_NETWORK, 0, "%s answered HTTP %ld", url, rs.status);
	else
		ret = 0;
out:
	free(rs.body);
	oci_registry_close(&r);
	return ret;
}
