/* virtio-vsock packet and handshake parsing: pure functions. */
#include <string.h>

#include "virtio/vsock.h"

int vsock_parse_tx(const struct guest_mem *m, const struct virtq_chain *c, struct vsock_hdr *hdr,
		   const char **why)
{
	if (c->read_len < sizeof(*hdr) ||
	    virtq_chain_read(m, c, 0, hdr, sizeof(*hdr)) != sizeof(*hdr)) {
		*why = "packet shorter than its header";
		return -1;
	}
	/* Only the copy in *hdr is used from here on. */
	if (hdr->len > VSOCK_MAX_PAYLOAD) {
		*why = "payload larger than 64 KiB";
		return -1;
	}
	if (hdr->len > c->read_len - sizeof(*hdr)) {
		*why = "payload length beyond the buffers";
		return -1;
	}
	return 0;
}

static int parse_verb(const char *verb, const char *buf, size_t len, uint32_t *port)
{
	const size_t vlen = strlen(verb);
	const size_t maxline = vlen + 10 + 2; /* verb + 4294967295 + "\r\n" */
	size_t n = len < maxline ? len : maxline;
	const char *nl = memchr(buf, '\n', n);
	size_t cmp = n < vlen ? n : vlen;
	if (memcmp(buf, verb, cmp) != 0)
		return -1;
	if (!nl)
		return len >= maxline ? -1 : 0;
	size_t end = (size_t)(nl - buf);
	if (end > vlen && buf[end - 1] == '\r')
		end--; /* tolerate CRLF */
	if (end <= vlen)
		return -1;
	uint64_t v = 0;
	for (size_t i = vlen; i < end; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(buf[i] - '0');
		if (v > UINT32_MAX)
			return -1;
	}
	*port = (uint32_t)v;
	return (int)(nl - buf) + 1;
}

int vsock_parse_connect(const char *buf, size_t len, uint32_t *port)
{
	return parse_verb("CONNECT ", buf, len, port);
}

int vsock_parse_handshake(const char *buf, size_t len, uint32_t *port, bool *park)
{
	int c = parse_verb("CONNECT ", buf, len, port);
	int p = c < 0 ? parse_verb("PARK ", buf, len, port) : -1;
	*park = p > 0;
	if (c > 0 || p > 0)
		return c > 0 ? c : p;
	return c == 0 || p == 0 ? 0 : -1;
}
