/* Agent connections of the VM backend: the per-sandbox budget, command.run's
 * pool and the guards that end a call on a hung guest.  See backend_vm_int.h. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "agent/proto.h"
#include "common/log.h"
#include "sandbox/backend_vm_int.h"
#include "sandbox/vm_int.h"

/* ---- the budget ------------------------------------------------------------------------ */

static int busy_err(const struct vm_entry *e, const char *what, struct msb_err *err)
{
	return msb_err_set(err, MSB_EK_STATE, 0,
			   "sandbox '%s' is busy: %s needs an agent connection and all %d the "
			   "server may open to it are in use (commands, REPLs, streams, file "
			   "transfers; its agent serves %d); end or release a stream or transfer, "
			   "or try again when one has finished",
			   e->name, what, VM_CONNS_MAX, AGENT_MAX_CONNS);
}

struct agent_client *vm_agent_open(struct vm_backend *b, struct vm_entry *e, struct msb_err *err)
{
	unsigned limit = b->file_timeout_ms < CONNECT_MAX_MS ? b->file_timeout_ms : CONNECT_MAX_MS;
	struct agent_client *c = agent_client_open(e->vsock, (int)limit, err);
	if (!c && err->kind == MSB_EK_TIMEOUT)
		msb_err_set(
			err, MSB_EK_TIMEOUT, 0,
			"sandbox '%s' did not accept an agent connection within %u s (its guest "
			"may be hung); try again, or stop the sandbox",
			e->name, limit / 1000);
	return c;
}

int vm_conn_reserve(struct vm_entry *e, const char *what, struct msb_err *err)
{
	struct agent_client *evict = NULL;
	int r = 0;
	pthread_mutex_lock(&e->pool_mu);
	if (e->conns < VM_CONNS_MAX)
		e->conns++;
	else if (e->nidle > 0) /* its place passes to the new connection */
		evict = e->idle[--e->nidle];
	else
		r = busy_err(e, what, err);
	pthread_mutex_unlock(&e->pool_mu);
	agent_client_free(evict);
	return r;
}

void vm_conn_release(struct vm_entry *e)
{
	pthread_mutex_lock(&e->pool_mu);
	e->conns--;
	pthread_cond_broadcast(&e->pool_cv); /* a command waiting for a place */
	pthread_mutex_unlock(&e->pool_mu);
}

int vm_guest_probe(struct vm_backend *b, struct vm_entry *e, unsigned limit, struct msb_err *err)
{
	if (vm_conn_reserve(e, "a liveness check", err) < 0)
		return -1;
	int sock = agent_vsock_connect(e->vsock, AGENT_PORT_AGENT, (int)limit, err);
	struct agent_client *c = sock >= 0 ? agent_client_from_fd(sock, (int)limit, err) : NULL;
	int r = c ? 0 : -1;
	agent_client_free(c);
	vm_conn_release(e);
	return r;
}

/* ---- command.run's pool ---------------------------------------------------------------- */

struct agent_client *vm_conn_take(struct vm_backend *b, struct vm_entry *e, struct msb_err *err)
{
	pthread_mutex_lock(&e->pool_mu);
	/* Wait for a connection given back, or for a place in the budget while
	 * one of ours may give one back (streams and transfers may hold the rest). */
	while (!e->closed && e->nidle == 0 &&
	       (e->busy >= CMD_CONNS_MAX || (e->conns >= VM_CONNS_MAX && e->busy > 0)) &&
	       !sb_client_gone()) {
		vm_cond_wait_ms(&e->pool_cv, &e->pool_mu, CLOCK_REALTIME, 250);
	}
	struct agent_client *c = NULL;
	bool open_new = false;
	if (e->closed)
		msb_err_set(err, MSB_EK_STATE, 0, "sandbox '%s' was stopped", e->name);
	else if (e->nidle > 0)
		c = e->idle[--e->nidle];
	else if (e->busy < CMD_CONNS_MAX && e->conns < VM_CONNS_MAX)
		open_new = true;
	else if (e->busy == 0)
		busy_err(e, "a command", err);
	else
		msb_err_set(err, MSB_EK_STATE, 0, "the client went away");
	if (c || open_new)
		e->busy++;
	if (open_new)
		e->conns++;
	pthread_mutex_unlock(&e->pool_mu);
	struct msb_err perr = {0};
	if (c && agent_client_pump(c, 0, &perr) < 0) {
		msb_debug("sandbox %s: an idle command connection broke (%s)", e->name, perr.msg);
		agent_client_free(c); /* its place in the budget goes to the new one */
		c = NULL;
		open_new = true;
	}
	if (open_new && !(c = vm_agent_open(b, e, err))) {
		pthread_mutex_lock(&e->pool_mu);
		e->busy--;
		e->conns--;
		pthread_cond_broadcast(&e->pool_cv);
		pthread_mutex_unlock(&e->pool_mu);
	}
	return c;
}

void vm_conn_give(struct vm_entry *e, struct agent_client *c, bool healthy)
{
	pthread_mutex_lock(&e->pool_mu);
	e->busy--;
	if (healthy && !e->closed && e->nidle < CMD_IDLE_MAX) {
		e->idle[e->nidle++] = c;
		c = NULL;
	} else {
		e->conns--;
	}
	pthread_cond_broadcast(&e->pool_cv);
	pthread_mutex_unlock(&e->pool_mu);
	agent_client_free(c);
}

/* ---- guards on long agent calls -------------------------------------------------------- */

#define GUARD_SLICE_MS 250

static bool guard_tick(struct vm_ticker *t, void *arg)
{
	struct vm_guard *g = arg;
	uint64_t now = sandbox_now_ms();
	int why = GUARD_NONE;
	if (g->deadline && now > g->deadline)
		why = GUARD_DEADLINE;
	else if (g->alive && !g->alive(g->alive_arg))
		why = GUARD_GONE;
	else if (now - atomic_load(&g->last_ms) >= g->b->file_timeout_ms) {
		pthread_mutex_unlock(&t->mu); /* the probe takes up to the limit */
		struct msb_err perr = {0};
		int r = vm_guest_probe(g->b, g->e, g->b->file_timeout_ms, &perr);
		pthread_mutex_lock(&t->mu);
		if (t->stop) /* the call ended meanwhile: its socket may be pooled again */
			return true;
		if (r == 0 || perr.kind != MSB_EK_TIMEOUT) /* alive, or not known */
			atomic_store(&g->last_ms, sandbox_now_ms());
		else
			why = GUARD_HUNG;
	}
	if (why == GUARD_NONE)
		return false;
	atomic_store(&g->why, why);
	shutdown(g->sock, SHUT_RDWR);
	return true;
}

int vm_guard_start(struct vm_guard *g, struct vm_backend *b, struct vm_entry *e, int sock,
		   uint64_t deadline, bool watch_client, struct msb_err *err)
{
	*g = (struct vm_guard){.b = b, .e = e, .sock = sock, .deadline = deadline};
	if (watch_client)
		sb_client_get(&g->alive, &g->alive_arg);
	atomic_store(&g->last_ms, sandbox_now_ms());
	return vm_ticker_start(&g->tk, GUARD_SLICE_MS, guard_tick, g, err);
}

int vm_guard_stop(struct vm_guard *g)
{
	vm_ticker_stop(&g->tk);
	return atomic_load(&g->why);
}

int vm_guard_err(const struct vm_guard *g, int why, const char *what, struct msb_err *err)
{
	if (why == GUARD_GONE)
		return msb_err_set(err, MSB_EK_STATE, 0, "the client went away; %s was interrupted",
				   what);
	if (why == GUARD_DEADLINE)
		return msb_err_set(err, MSB_EK_TIMEOUT, 0,
				   "the sandbox did not report the end of %s within %d s of its "
				   "timeout; the guest is not answering (try again, or stop the "
				   "sandbox)",
				   what, HOST_GRACE_MS / 1000);
	return msb_err_set(err, MSB_EK_TIMEOUT, 0,
			   "the sandbox stopped answering during %s: no sign of life for %u s "
			   "(its guest may be hung); try again, or stop the sandbox",
			   what, g->b->file_timeout_ms / 1000);
}
