/* msb-agent's subcommands for files and metrics (files_tool.c). */
#ifndef MSB_AGENT_FILES_TOOL_H
#define MSB_AGENT_FILES_TOOL_H

#include <stdbool.h>
#include <stdio.h>

bool agent_files_tool_has(const char *cmd);
void agent_files_tool_usage(FILE *out);
/* argv[0] is the subcommand.  Returns the exit status. */
int agent_files_tool(const char *vsock, int connect_timeout_ms, int argc, char **argv);

#endif
