/* The agent script of docs/sdk.md in C: start a Python sandbox, keep a
 * variable across two runs, run a command, read metrics, stop.
 *
 *   cc quickstart.c -o quickstart -lmicrosandbox && ./quickstart [server-url]
 */
#include <microsandbox.h>
#include <stdio.h>

static int fail(msbc_client *c, const char *what)
{
	fprintf(stderr, "%s: %s (%s)\n", what, msbc_client_errmsg(c),
		msbc_status_name(msbc_client_status(c)));
	return 1;
}

int main(int argc, char **argv)
{
	/* NULL: $MSB_SERVER_URL / $MSB_API_KEY, else http://127.0.0.1:5555 */
	msbc_client *c = msbc_client_new(argc > 1 ? argv[1] : NULL, NULL);
	if (!c)
		return 1;
	int rc = 1;
	msbc_result *r = NULL;
	if (msbc_sandbox_start(c, "quickstart-c", "microsandbox/python", 512, 1, NULL, NULL) < 0) {
		rc = fail(c, "start");
		goto out;
	}
	if (msbc_repl_run(c, "quickstart-c", "python", "x = 6 * 7", 0, &r) < 0) {
		rc = fail(c, "run");
		goto stop;
	}
	msbc_result_free(r);
	if (msbc_repl_run(c, "quickstart-c", "python", "print(x)", 0, &r) < 0) {
		rc = fail(c, "run");
		goto stop;
	}
	printf("%s\n", msbc_result_stdout(r)); /* 42 */
	msbc_result_free(r);
	const char *args[] = {"hello"};
	if (msbc_command_run(c, "quickstart-c", "echo", args, 1, 0, &r) < 0) {
		rc = fail(c, "command");
		goto stop;
	}
	printf("%d %s\n", msbc_result_exit_code(r), msbc_result_stdout(r)); /* 0 hello */
	msbc_result_free(r);
	struct msbc_metrics m;
	if (msbc_metrics_get(c, "quickstart-c", &m) < 0) {
		rc = fail(c, "metrics");
		goto stop;
	}
	printf("running=%d memory=%lld MiB\n", m.running, (long long)m.memory_mib);
	rc = 0;
stop:
	if (msbc_sandbox_stop(c, "quickstart-c") < 0 && rc == 0)
		rc = fail(c, "stop");
out:
	msbc_client_free(c);
	return rc;
}
