/* msb-agent's repl and pty subcommands (main_repl.c, part of the binary). */
#ifndef MSB_AGENT_MAIN_REPL_H
#define MSB_AGENT_MAIN_REPL_H

#include <stdbool.h>
#include <stdio.h>

bool agent_repl_tool_has(const char *cmd);
void agent_repl_tool_usage(FILE *out);
/* argv[0] is the subcommand.  Returns the process exit status. */
int agent_repl_tool(const char *vsock, int connect_timeout_ms, int argc, char **argv);

#endif
