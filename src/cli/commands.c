/* The command table.  Add a command: write src/cli/cmd_<name>.c with
 * `int cmd_<name>(int argc, char **argv)`, declare it here, add its row. */
#include "cli/cli.h"

#include "common/cleanup.h"

int cmd_version(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_image(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_add(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_exe(int argc, char **argv);
int cmd_run(int argc, char **argv);

const struct cli_command cli_commands[] = {
	{"version", {NULL}, "Print the version", cmd_version},
	{"server", {NULL}, "Run the JSON-RPC and MCP server", cmd_server},
	{"pull", {NULL}, "Pull an image from a registry into the store", cmd_pull},
	{"login", {NULL}, "Store credentials for an image registry", cmd_login},
	{"logout", {NULL}, "Forget the credentials for an image registry", cmd_logout},
	{"image", {NULL}, "Manage stored images: ls, rm, prune, inspect, import", cmd_image},
	{"init", {NULL}, "Make a directory a project (Sandboxfile, .menv/)", cmd_init},
	{"add", {NULL}, "Add sandboxes to the Sandboxfile", cmd_add},
	{"remove", {"rm", NULL}, "Remove sandboxes from the Sandboxfile", cmd_remove},
	{"list", {NULL}, "List the sandboxes of the Sandboxfile", cmd_list},
	{"exe", {"x", NULL}, "Run a command in a throwaway sandbox from an image", cmd_exe},
	{"run", {"r", NULL}, "Run a sandbox of the project in the foreground", cmd_run},
};

const unsigned cli_ncommands = MSB_ARRAY_SIZE(cli_commands);
