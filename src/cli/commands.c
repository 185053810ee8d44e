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
int cmd_cp(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_fork(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_down(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_clean(int argc, char **argv);
int cmd_install(int argc, char **argv);
int cmd_uninstall(int argc, char **argv);
int cmd_self(int argc, char **argv);
int cmd_shell(int argc, char **argv);

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
	{"cp", {NULL}, "Copy files between the host and a running sandbox", cmd_cp},
	{"snapshot", {NULL}, "Snapshot a running sandbox: create, ls, rm", cmd_snapshot},
	{"fork", {NULL}, "Start copies of a snapshot and run a command in each", cmd_fork},
	{"up", {NULL}, "Start sandboxes of the project in the background", cmd_up},
	{"down", {NULL}, "Stop running sandboxes of the project", cmd_down},
	{"apply", {NULL}, "Make the running sandboxes match the Sandboxfile", cmd_apply},
	{"status",
	 {"ps", "stat", NULL},
	 "Show the project's sandboxes: running, pids, use",
	 cmd_status},
	{"log", {NULL}, "Print a sandbox's log", cmd_log},
	{"clean", {NULL}, "Remove sandboxes' state (.menv/) and writable layers", cmd_clean},
	{"install", {"i", NULL}, "Install a sandbox as a command on PATH", cmd_install},
	{"uninstall", {NULL}, "Remove a command made by msb install", cmd_uninstall},
	{"self", {NULL}, "Manage msb itself: self uninstall", cmd_self},
	{"shell", {NULL}, "Open a shell in a sandbox of the project", cmd_shell},
};

const unsigned cli_ncommands = MSB_ARRAY_SIZE(cli_commands);
