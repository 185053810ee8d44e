/* msb server start|stop|status|keygen|log (upstream §1; docs/cli.md).
 *
 * The server runs inside this process (no separate msbserver binary): start
 * binds, writes $MICROSANDBOX_HOME/server.pid and serves until SIGTERM or
 * SIGINT; with -d it forks, detaches and reports once the port is bound. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/paths.h"
#include "include/microsandbox.h"
#include "server/auth.h"
#include "server/backend.h"
#include "server/server.h"
#include "sandbox/backend_vm.h"

int cmd_server(int argc, char **argv);

#define CMD "server"

struct home {
	char dir[4096], pid[4200], key[4200], log[4200], url[4200];
};

static int home_paths(struct home *h, struct msb_err *err)
{
	if (msb_home(h->dir, sizeof(h->dir), err) < 0)
		return -1;
	snprintf(h->pid, sizeof(h->pid), "%s/server.pid", h->dir);
	snprintf(h->key, sizeof(h->key), "%s/server.key", h->dir);
	snprintf(h->log, sizeof(h->log), "%s/server.log", h->dir);
	snprintf(h->url, sizeof(h->url), "%s/server.url", h->dir);
	return 0;
}

/* Reads a small file, trailing whitespace cut.  -1 with errno when absent. */
static int read_small(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return 0;
}

/* Writes a file atomically with the given mode. */
static int write_small(const char *path, const char *text, unsigned mode, struct msb_err *err)
{
	char tmp[4300];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return msb_err_sys(err, "creating %s", tmp);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
		msb_err_sys(err, "writing %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		msb_err_sys(err, "renaming %s to %s", tmp, path);
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The pid in server.pid if that process is alive and is an msb server;
 * 0 when not running (a stale file is removed), -1 when there is no file. */
static pid_t running_pid(const struct home *h)
{
	char buf[64];
	if (read_small(h->pid, buf, sizeof(buf)) < 0)
		return -1;
	char *end = NULL;
	long pid = strtol(buf, &end, 10);
	if (pid > 0 && *end == '\0' && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
		/* A recycled pid must not be taken for the server. */
		char path[64], cmdline[512] = "";
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;
		if (n > 0) {
			cmdline[n] = '\0';
			for (ssize_t i = 0; i < n; i++)
				if (cmdline[i] == '\0')
					cmdline[i] = ' ';
			if (strstr(cmdline, "server"))
				return (pid_t)pid;
		}
	}
	unlink(h->pid);
	return 0;
}

static int server_key(const struct home *h, const char *given, bool reset, char *key, size_t len,
		      struct msb_err *err)
{
	if (given) {
		if (!*given)
			return msb_err_set(err, MSB_EK_USAGE, 0, "--key must not be empty");
		snprintf(key, len, "%s", given);
		return write_small(h->key, key, 0600, err);
	}
	if (!reset && read_small(h->key, key, len) == 0 && key[0])
		return 0;
	char fresh[AUTH_KEY_LEN + 1];
	if (auth_random_key(fresh, err) < 0)
		return -1;
	snprintf(key, len, "%s", fresh);
	return write_small(h->key, key, 0600, err);
}

struct start_opts {
	const char *host, *path, *key;
	unsigned port;
	bool dev, detach, reset;
};

/* Sandboxes on real VMs; MSB_SERVER_BACKEND=unavailable serves the protocol
 * without them (every sandbox method answers SB_UNAVAILABLE_MSG): for hosts
 * without KVM and for protocol tests that must not boot VMs. */
static int pick_backend(const char *projects, struct sandbox_backend **vm,
			const struct sandbox_backend **be, struct msb_err *err)
{
	const char *want = getenv("MSB_SERVER_BACKEND");
	if (want && strcmp(want, "unavailable") == 0) {
		*be = sb_backend_unavailable();
		return 0;
	}
	if (want && *want && strcmp(want, "vm") != 0)
		return msb_err_set(
			err, MSB_EK_USAGE, 0,
			"MSB_SERVER_BACKEND='%s' is not a backend; use vm or unavailable", want);
	*vm = sandbox_backend_vm_new(projects, err);
	*be = *vm;
	return *vm ? 0 : -1;
}

/* Serves until SIGTERM/SIGINT.  ready_fd >= 0: write "ok" or the error there
 * once the outcome of binding is known (the detached child's parent reads it). */
static int serve(const struct home *h, const struct start_opts *o, const char *key, int ready_fd)
{
	struct msb_err err = {0};
	char projects[4200];
	if (o->path)
		snprintf(projects, sizeof(projects), "%s", o->path);
	else
		snprintf(projects, sizeof(projects), "%s/projects", h->dir);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Blocked before any thread starts, so only sigwait() below sees them. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct msb_server_config cfg = {
		.host = o->host,
		.port = (uint16_t)o->port,
		.key = key,
		.dev = o->dev,
		.project_dir = projects,
	};
	struct msb_server *s = NULL;
	struct sandbox_backend *vm = NULL;
	const struct sandbox_backend *be = NULL;
	int rc = msb_mkdir_p(projects, 0755, &err);
	if (rc == 0)
		rc = pick_backend(projects, &vm, &be, &err);
	if (rc == 0)
		rc = msb_server_new(&cfg, be, &s, &err);
	if (rc == 0)
		rc = msb_server_listen(s, &err);
	char pid[32];
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (rc == 0)
		rc = write_small(h->pid, pid, 0644, &err);
	char url[300];
	const char *host = o->host ? o->host : "127.0.0.1";
	if (strcmp(host, "0.0.0.0") == 0)
		host = "127.0.0.1";
	else if (strcmp(host, "::") == 0)
		host = "::1";
	snprintf(url, sizeof(url), "http://%s%s%s:%u\n", strchr(host, ':') ? "[" : "", host,
		 strchr(host, ':') ? "]" : "", rc == 0 ? msb_server_port(s) : 0);
	if (rc == 0) /* where `msb server status` asks for the sandboxes */
		rc = write_small(h->url, url, 0644, &err);
	if (rc < 0) {
		msb_server_free(s);
		sandbox_backend_vm_free(vm);
		if (ready_fd >= 0) {
			dprintf(ready_fd, "%s", err.msg);
			close(ready_fd);
		}
		return cli_fail(CMD, &err);
	}
	host = o->host ? o->host : "127.0.0.1";
	fprintf(stderr, "msb server listening on http://%s%s%s:%u (pid %d%s)\n",
		strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
		msb_server_port(s), (int)getpid(), o->dev ? ", --dev: no API keys" : "");
	if (ready_fd >= 0) {
		dprintf(ready_fd, "ok %u", msb_server_port(s));
		close(ready_fd);
	}
	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	fprintf(stderr, "msb server: %s received, stopping\n",
		sig == SIGINT ? "SIGINT" : "SIGTERM");
	msb_server_free(s); /* stops the sandboxes through the backend's shutdown */
	sandbox_backend_vm_free(vm);
	/* Only our own pid file: a newer server may have replaced it. */
	char buf[64];
	if (read_small(h->pid, buf, sizeof(buf)) == 0 && atoi(buf) == (int)getpid()) {
		unlink(h->pid);
		unlink(h->url);
	}
	fprintf(stderr, "msb server stopped\n");
	return 0;
}

static int detach_and_serve(const struct home *h, const struct start_opts *o, const char *key)
{
	int p[2];
	struct msb_err err = {0};
	if (pipe2(p, O_CLOEXEC) < 0)
		return cli_fail(CMD, (msb_err_sys(&err, "creating a pipe"), &err));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return cli_fail(CMD, (msb_err_sys(&err, "forking the server"), &err));
	if (pid == 0) {
		close(p[0]);
		setsid();
		int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		int log = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (devnull >= 0)
			dup2(devnull, 0);
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		_exit(serve(h, o, key, p[1]));
	}
	close(p[1]);
	char buf[MSB_ERR_MSG_MAX];
	ssize_t n, got = 0;
	while ((n = read(p[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	close(p[0]);
	buf[got > 0 ? got : 0] = '\0';
	if (strncmp(buf, "ok ", 3) != 0) {
		int status = 0;
		waitpid(pid, &status, 0);
		return cli_fail(CMD,
				(msb_err_set(&err, MSB_EK_SYSTEM, 0, "%s",
					     buf[0] ? buf : "the server exited while starting"),
				 &err));
	}
	const char *host = o->host ? o->host : "127.0.0.1";
	bool v6 = strchr(host, ':') != NULL; /* [::1]:5555, as in a URL */
	printf("msb server started on %s%s%s:%s (pid %d); log: %s\n", v6 ? "[" : "", host,
	       v6 ? "]" : "", buf + 3, (int)pid, h->log);
	return 0;
}

static void start_usage(FILE *f)
{
	fprintf(f, "Usage: msb server start [--host IP] [--port N] [-p|--path DIR] [--dev]\n"
		   "                        [-k|--key KEY] [-d|--detach] [-r|--reset-key]\n\n"
		   "Serves JSON-RPC (/api/v1/rpc), MCP (/mcp) and /api/v1/health.\n"
		   "  --host IP        address to bind (default 127.0.0.1)\n"
		   "  --port N         port (default 5555; 0 = any free port)\n"
		   "  -p, --path DIR   project directory (default $MICROSANDBOX_HOME/projects)\n"
		   "  --dev            no API keys (development only)\n"
		   "  -k, --key KEY    use and save KEY as server.key\n"
		   "  -d, --detach     run in the background, logging to server.log\n"
		   "  -r, --reset-key  make a new server.key (invalidates old tokens)\n");
}

static int do_start(int argc, char **argv)
{
	static const struct option opts[] = {
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'P'},
		{"path", required_argument, NULL, 'p'},
		{"dev", no_argument, NULL, 'D'},
		{"key", required_argument, NULL, 'k'},
		{"detach", no_argument, NULL, 'd'},
		{"reset-key", no_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct start_opts o = {.port = SRV_DEFAULT_PORT};
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+p:k:drh", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			o.host = optarg;
			break;
		case 'P': {
			char *end = NULL;
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v > 65535)
				return cli_usage_error(CMD, "--port '%s' is not a port number",
						       optarg);
			o.port = (unsigned)v;
			break;
		}
		case 'p':
			o.path = optarg;
			break;
		case 'D':
			o.dev = true;
			break;
		case 'k':
			o.key = optarg;
			break;
		case 'd':
			o.detach = true;
			break;
		case 'r':
			o.reset = true;
			break;
		case 'h':
			start_usage(stdout);
			return 0;
		default:
			return cli_usage_error(CMD, "bad option for 'server start'");
		}
	}
	if (optind < argc)
		return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
	struct home h;
	struct msb_err err = {0};
	if (home_paths(&h, &err) < 0 || msb_mkdir_p(h.dir, 0755, &err) < 0)
		return cli_fail(CMD, &err);
	pid_t pid = running_pid(&h);
	if (pid > 0) {
		printf("msb server is already running (pid %d)\n", (int)pid);
		return 0;
	}
	char key[512] = "";
	if (!o.dev && server_key(&h, o.key, o.reset, key, sizeof(key), &err) < 0)
		return cli_fail(CMD, &err);
	if (o.detach)
		return detach_and_serve(&h, &o, o.dev ? NULL : key);
	return serve(&h, &o, o.dev ? NULL : key, -1);
}

static int do_stop(void)
{
	struct home h;
	struct msb_err err = {0};
	if (home_paths(&h, &err) < 0)
		return cli_fail(CMD, &err);
	pid_t pid = running_pid(&h);
	if (pid <= 0)
		return cli_fail(
			CMD, (msb_err_set(&err, MSB_EK_STATE, 0, "the server is not running (%s)",
					  pid < 0 ? "no server.pid"
						  : "stale server.pid "
						    "removed"),
			      &err));
	if (kill(pid, SIGTERM) < 0)
		return cli_fail(
			CMD, (msb_err_sys(&err, "signalling the server (pid %d)", (int)pid), &err));
	/* It stops its sandboxes first; give that time before saying it's done. */
	for (int i = 0; i < 300 && kill(pid, 0) == 0; i++)
		usleep(100 * 1000);
	if (kill(pid, 0) == 0) {
		fprintf(stderr, "msb server: pid %d is still stopping after 30 s\n", (int)pid);
		return 1;
	}
	unlink(h.pid);
	printf("msb server stopped (pid %d)\n", (int)pid);
	return 0;
}

/* The running server's sandboxes (sandbox.list), with a short-lived key made
 * from server.key (a --dev server ignores it). */
static void print_sandboxes(const struct home *h)
{
	char url[512], key[512] = "";
	if (read_small(h->url, url, sizeof(url)) < 0) {
		printf("sandboxes: unknown (no %s)\n", h->url);
		return;
	}
	_cleanup_free_ char *token = NULL;
	struct msb_err err = {0};
	int64_t now = (int64_t)time(NULL);
	if (read_small(h->key, key, sizeof(key)) == 0 && key[0] &&
	    auth_token_make(key, now, now + 60, &token, &err) < 0)
		token = NULL;
	msbc_client *c = msbc_client_new(url, token ? token : "");
	char *js = NULL;
	if (!c) {
		printf("sandboxes: unknown (out of memory)\n");
		return;
	}
	msbc_client_set_timeout(c, 10);
	if (msbc_sandbox_list(c, &js) < 0) {
		printf("sandboxes: unknown (%s)\n", msbc_client_errmsg(c));
		msbc_client_free(c);
		return;
	}
	json_t *root = json_loads(js, 0, NULL);
	json_t *rows = json_object_get(root, "sandboxes");
	size_t n = json_array_size(rows);
	printf("sandboxes: %zu\n", n);
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(rows, i);
		const char *img = json_string_value(json_object_get(r, "image"));
		printf("  %-24s %-9s pid %-8lld %s\n",
		       json_string_value(json_object_get(r, "name")) ?: "?",
		       json_string_value(json_object_get(r, "status")) ?: "?",
		       (long long)json_integer_value(json_object_get(r, "pid")), img ? img : "");
	}
	json_decref(root);
	free(js);
	msbc_client_free(c);
}

static int do_status(void)
{
	struct home h;
	struct msb_err err = {0};
	if (home_paths(&h, &err) < 0)
		return cli_fail(CMD, &err);
	pid_t pid = running_pid(&h);
	if (pid > 0) {
		printf("msb server is running (pid %d)\n", (int)pid);
		print_sandboxes(&h);
	} else {
		printf("msb server is not running\n");
	}
	return 0;
}

static int do_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
		{"expire", required_argument, NULL, 'e'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *expire = "24h";
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+e:h", opts, NULL)) != -1) {
		if (c == 'e') {
			expire = optarg;
		} else if (c == 'h') {
			printf("Usage: msb server keygen [--expire DURATION]\n\n"
			       "Prints an API key for this server: msb_ + a JWT signed with "
			       "server.key.\n"
			       "DURATION: <n>s|m|h|d|w|mo|y (a bare number is hours; default "
			       "24h).\n");
			return 0;
		} else {
			return cli_usage_error(CMD, "bad option for 'server keygen'");
		}
	}
	struct home h;
	struct msb_err err = {0};
	int64_t secs = 0;
	if (auth_parse_duration(expire, &secs, &err) < 0)
		return cli_fail(CMD, &err);
	if (home_paths(&h, &err) < 0)
		return cli_fail(CMD, &err);
	char key[512];
	if (read_small(h.key, key, sizeof(key)) < 0 || !key[0])
		return cli_fail(CMD, (msb_err_set(&err, MSB_EK_NOT_FOUND, 0,
						  "no server key in %s; start the server once "
						  "(msb server start) or give one with --key",
						  h.key),
				      &err));
	time_t now = time(NULL);
	_cleanup_free_ char *token = NULL;
	if (auth_token_make(key, now, now + secs, &token, &err) < 0)
		return cli_fail(CMD, &err);
	time_t exp = now + secs;
	struct tm tm;
	char when[64];
	gmtime_r(&exp, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
	printf("Token: %s\nToken expires: %s\n", token, when);
	return 0;
}

static int do_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{"follow", no_argument, NULL, 'f'},
		{"tail", required_argument, NULL, 't'},
		{"path", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool follow = false;
	const char *tail = NULL, *project = NULL;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "ft:p:h", opts, NULL)) != -1) {
		if (c == 'f') {
			follow = true;
		} else if (c == 't') {
			tail = optarg;
		} else if (c == 'p') {
			project = optarg;
		} else if (c == 'h') {
			printf("Usage: msb server log [SANDBOX] [-p|--path DIR] [-f|--follow] "
			       "[-t|--tail "
			       "N]\n\n"
			       "Without SANDBOX: the detached server's own log (server.log).\n"
			       "With SANDBOX: that sandbox's log in the server's project (-p: the\n"
			       "project directory the server was started with; default\n"
			       "$MICROSANDBOX_HOME/projects): its start, stop and config.exec "
			       "output.\n");
			return 0;
		} else {
			return cli_usage_error(CMD, "bad option for 'server log'");
		}
	}
	struct home h;
	struct msb_err err = {0};
	if (home_paths(&h, &err) < 0)
		return cli_fail(CMD, &err);
	char path[8400];
	if (optind < argc) {
		const char *name = argv[optind];
		if (!sb_name_valid(name))
			return cli_usage_error(CMD, "'%s' is not a sandbox name", name);
		if (project)
			snprintf(path, sizeof(path), "%s/.menv/log/Sandboxfile/%s.log", project,
				 name);
		else
			snprintf(path, sizeof(path), "%s/projects/.menv/log/Sandboxfile/%s.log",
				 h.dir, name);
	} else {
		snprintf(path, sizeof(path), "%s", h.log);
	}
	if (access(path, R_OK) < 0)
		return cli_fail(
			CMD,
			(msb_err_set(&err, MSB_EK_NOT_FOUND, errno, "no log at %s", path), &err));
	if (tail) {
		char *end = NULL;
		strtoul(tail, &end, 10);
		if (!*tail || *end)
			return cli_usage_error(CMD, "--tail '%s' is not a number", tail);
	}
	char *args[8];
	int n = 0;
	args[n++] = "tail";
	if (follow)
		args[n++] = "-F";
	args[n++] = "-n";
	args[n++] = tail ? (char *)tail : (follow ? "10" : "+1");
	args[n++] = "--";
	args[n++] = path;
	args[n] = NULL;
	fflush(NULL);
	execvp("tail", args);
	return cli_fail(CMD, (msb_err_sys(&err, "running tail"), &err));
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: msb server <command> [options]\n\n"
		   "Commands:\n"
		   "  start    run the server (JSON-RPC, MCP, health) in front of the sandboxes\n"
		   "  stop     stop the running server (SIGTERM) and its sandboxes\n"
		   "  status   say whether the server runs\n"
		   "  keygen   print an API key: msb server keygen [--expire 24h]\n"
		   "  log      print the server's log, or a sandbox's\n\n"
		   "Run 'msb server <command> --help' for its options.\n");
}

int cmd_server(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(sub, "start") == 0)
		return do_start(argc - 1, argv + 1);
	if (strcmp(sub, "stop") == 0)
		return do_stop();
	if (strcmp(sub, "status") == 0)
		return do_status();
	if (strcmp(sub, "keygen") == 0)
		return do_keygen(argc - 1, argv + 1);
	if (strcmp(sub, "log") == 0)
		return do_log(argc - 1, argv + 1);
	return cli_usage_error(CMD, "unknown server command '%s'", sub);
}
