/* The table-driven field decoder that the codec's message decoders share
 * (codec.c, files_codec.c).  Internal to src/agent. */
#ifndef MSB_AGENT_CODEC_INT_H
#define MSB_AGENT_CODEC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/proto.h"

/* How one field of a message is stored into its decoded struct. */
enum field_kind {
	F_U32,	     /* uint32_t */
	F_U64,	     /* uint64_t */
	F_FLAG,	     /* bool: a u32, non-zero */
	F_STR,	     /* char *: a later field replaces an earlier one */
	F_STR_FIRST, /* char *: the first one counts, later ones are unknown fields */
	F_STR_ONCE,  /* char *: a second one is an error (kind corrupt) */
	F_ARG,	     /* char ** vector (NULL-terminated) + size_t count, one entry more */
	F_ENV,	     /* the same, entries checked to be NAME=VALUE */
	F_DIM,	     /* uint16_t terminal dimension */
	F_TERM,	     /* char *: a terminal name (replaces) */
	F_CHARS,     /* char[size]: a string `ok` accepts; a second one is an error */
	F_CALL,	     /* `call` stores it */
};

struct field_rule {
	uint16_t tag;
	uint8_t kind;
	size_t off;	  /* the member in the output struct */
	size_t count_off; /* F_ARG, F_ENV: the count member; F_CHARS: the array's size */
	const char *what; /* F_CHARS: what the field is, for messages */
	bool (*ok)(const char *v, size_t n); /* F_CHARS: v[0..n) has no NUL */
	/* F_CALL: store field f into the output struct; 0 or -1 with err. */
	int (*call)(const struct agent_field *f, void *out, struct msb_err *err);
};

#define RULE(tag_, kind_, type, member)                                       \
	{                                                                     \
		.tag = (tag_), .kind = (kind_), .off = offsetof(type, member) \
	}
#define RULE_VEC(tag_, kind_, type, member, count)                             \
	{                                                                      \
		.tag = (tag_), .kind = (kind_), .off = offsetof(type, member), \
		.count_off = offsetof(type, count)                             \
	}
#define RULE_CHARS(tag_, type, member, what_, ok_)                                     \
	{                                                                              \
		.tag = (tag_), .kind = F_CHARS, .off = offsetof(type, member),         \
		.count_off = sizeof(((type *)0)->member), .what = (what_), .ok = (ok_) \
	}
#define RULE_CALL(tag_, call_)                                 \
	{                                                      \
		.tag = (tag_), .kind = F_CALL, .call = (call_) \
	}
#define MAX_RULES 16

/* Decode the fields of a `type` message into `out` by `rules` (at most
 * MAX_RULES); other fields go through agent_field_unknown().  *seen (optional):
 * bit i set when a field of rules[i] was stored.  On failure the caller
 * releases what was stored. */
int agent_decode_fields(const uint8_t *p, size_t n, uint16_t type, const struct field_rule *rules,
			size_t nrules, void *out, uint32_t *seen, struct msb_err *err);

#endif
