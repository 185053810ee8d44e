/* The JSON-RPC methods, one function each (table in methods.c). */
#ifndef MSB_SERVER_METHODS_H
#define MSB_SERVER_METHODS_H

#include "server/internal.h"

/* Upper bound of a `timeout` param, seconds (one day). */
#define RPC_MAX_TIMEOUT_S 86400.0
/* Largest file moved inside JSON (sandbox.file.read/write, MCP file tools);
 * bigger files go through the streaming file routes. */
#define RPC_MAX_INLINE_FILE (1u << 20)

int m_exec_start(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
int m_exec_stdin(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
int m_exec_signal(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
int m_exec_wait(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
int m_exec_stream(struct msb_server *s, const struct srv_request *rq, json_t *params, json_t *id,
		  struct srv_reply *rp, struct msb_err *err);
int m_file_read(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);
int m_file_write(struct msb_server *s, json_t *params, json_t **result, struct msb_err *err);

/* Parses an exec spec (sandbox, command, args, env, cwd, timeout, stdin, tty);
 * spec->args.v and spec->env.v are malloc'd (free them). */
int exec_spec_parse(json_t *params, struct sb_exec_spec *spec, struct msb_err *err);

/* "SIGTERM", "TERM" or a number -> signal number. */
int signal_parse(json_t *v, int *sig, struct msb_err *err);

#endif
