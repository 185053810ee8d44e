#include "project/state.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

struct msb_state {
	sqlite3 *db;
	char *path;
};

/* Migrations, in order; user_version is the number applied.  Append only. */
static const char *const migrations[] = {
	"CREATE TABLE sandboxes (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  name TEXT NOT NULL,\n"
	"  config_file TEXT NOT NULL,\n"
	"  config_last_modified TEXT NOT NULL,\n"
	"  status TEXT NOT NULL CHECK (status IN ('RUNNING', 'STOPPED')),\n"
	"  supervisor_pid INTEGER NOT NULL DEFAULT 0,\n"
	"  supervisor_start INTEGER NOT NULL DEFAULT 0,\n"
	"  microvm_pid INTEGER NOT NULL DEFAULT 0,\n"
	"  microvm_start INTEGER NOT NULL DEFAULT 0,\n"
	"  boot_id TEXT NOT NULL DEFAULT '',\n"
	"  rootfs_paths TEXT NOT NULL DEFAULT '',\n"
	"  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),\n"
	"  modified_at INTEGER NOT NULL DEFAULT (strftime('%s','now')),\n"
	"  UNIQUE (name, config_file)\n"
	");\n"
	"CREATE TABLE sandbox_metrics (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  sandbox_id INTEGER NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,\n"
	"  cpu_usage REAL, memory_usage INTEGER, disk_usage INTEGER,\n"
	"  created_at INTEGER NOT NULL DEFAULT (strftime('%s','now'))\n"
	");\n",
	/* 2: what `msb apply` compares (msb_sandbox_config_hash of the config it
	 * was started with; '' when started by something that did not record it). */
	"ALTER TABLE sandboxes ADD COLUMN config_hash TEXT NOT NULL DEFAULT '';\n",
	/* 3: where a running sandbox's agent answers (msb-vmm's hybrid vsock
	 * socket), for `msb shell` into a sandbox started in the background. */
	"ALTER TABLE sandboxes ADD COLUMN agent_socket TEXT NOT NULL DEFAULT '';\n",
};

static int db_err(struct msb_state *st, struct msb_err *err, const char *what)
{
	int code = sqlite3_errcode(st->db);
	enum msb_err_kind k = (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) ? MSB_EK_CORRUPT
			      : code == SQLITE_BUSY				? MSB_EK_STATE
										: MSB_EK_SYSTEM;
	return msb_err_set(err, k, 0, "%s in %s: %s", what, st->path, sqlite3_errmsg(st->db));
}

static int exec_sql(struct msb_state *st, const char *sql, struct msb_err *err)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_err(st, err, "updating the schema");
	return 0;
}

static int migrate(struct msb_state *st, struct msb_err *err)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "reading the schema version");
	int have = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
	sqlite3_finalize(s);
	int want = (int)MSB_ARRAY_SIZE(migrations);
	if (have > want)
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "%s was written by a newer msb (schema %d, this msb knows %d); "
				   "upgrade msb",
				   st->path, have, want);
	for (int v = have; v < want; v++) {
		char ver[64];
		snprintf(ver, sizeof(ver), "PRAGMA user_version = %d;", v + 1);
		if (exec_sql(st, "BEGIN IMMEDIATE", err) < 0)
			return -1;
		if (exec_sql(st, migrations[v], err) < 0 || exec_sql(st, ver, err) < 0) {
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		if (exec_sql(st, "COMMIT", err) < 0)
			return -1;
	}
	return 0;
}

int msb_state_open(const char *path, struct msb_state **out, struct msb_err *err)
{
	*out = NULL;
	struct msb_state *st = calloc(1, sizeof(*st));
	if (!st || !(st->path = strdup(path))) {
		free(st);
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "opening %s", path);
	}
	int rc = sqlite3_open_v2(path, &st->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		msb_err_set(err, MSB_EK_SYSTEM, 0, "opening %s: %s", path,
			    st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		msb_state_close(st);
		return -1;
	}
	/* Supervisors and the CLI write concurrently: wait rather than fail. */
	sqlite3_busy_timeout(st->db, 5000);
	if (exec_sql(st, "PRAGMA foreign_keys = ON", err) < 0 || migrate(st, err) < 0) {
		msb_state_close(st);
		return -1;
	}
	*out = st;
	return 0;
}

void msb_state_close(struct msb_state *st)
{
	if (!st)
		return;
	sqlite3_close(st->db);
	free(st->path);
	free(st);
}

static char *col_str(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return strdup(t ? (const char *)t : "");
}

#define ROW_COLUMNS                                                                           \
	"name, config_file, config_last_modified, status, supervisor_pid, supervisor_start, " \
	"microvm_pid, microvm_start, boot_id, rootfs_paths, created_at, modified_at, "        \
	"config_hash, agent_socket"

static int read_row(sqlite3_stmt *s, struct msb_state_row *r)
{
	memset(r, 0, sizeof(*r));
	r->name = col_str(s, 0);
	r->config_file = col_str(s, 1);
	r->config_last_modified = col_str(s, 2);
	const unsigned char *status = sqlite3_column_text(s, 3);
	r->status = status && strcmp((const char *)status, "RUNNING") == 0 ? MSB_STATUS_RUNNING
									   : MSB_STATUS_STOPPED;
	r->supervisor_pid = (pid_t)sqlite3_column_int64(s, 4);
	r->supervisor_start = (uint64_t)sqlite3_column_int64(s, 5);
	r->microvm_pid = (pid_t)sqlite3_column_int64(s, 6);
	r->microvm_start = (uint64_t)sqlite3_column_int64(s, 7);
	r->boot_id = col_str(s, 8);
	r->rootfs_paths = col_str(s, 9);
	r->created_at = sqlite3_column_int64(s, 10);
	r->modified_at = sqlite3_column_int64(s, 11);
	r->config_hash = col_str(s, 12);
	r->agent_socket = col_str(s, 13);
	if (!r->name || !r->config_file || !r->config_last_modified || !r->boot_id ||
	    !r->rootfs_paths || !r->config_hash || !r->agent_socket) {
		msb_state_row_clear(r);
		return -1;
	}
	return 0;
}

int msb_state_get(struct msb_state *st, const char *name, const char *config_file,
		  struct msb_state_row *row, bool *found, struct msb_err *err)
{
	*found = false;
	memset(row, 0, sizeof(*row));
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT " ROW_COLUMNS
			       " FROM sandboxes WHERE name = ?1 AND config_file = ?2",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "reading sandbox state");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	int ret = 0;
	if (rc == SQLITE_ROW) {
		if (read_row(s, row) < 0)
			ret = msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "reading %s", st->path);
		else
			*found = true;
	} else if (rc != SQLITE_DONE) {
		ret = db_err(st, err, "reading sandbox state");
	}
	sqlite3_finalize(s);
	return ret;
}

int msb_state_list(struct msb_state *st, const char *config_file, struct msb_state_row **rows,
		   size_t *n, struct msb_err *err)
{
	*rows = NULL;
	*n = 0;
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT " ROW_COLUMNS " FROM sandboxes WHERE ?1 IS NULL OR "
			       "config_file = ?1 ORDER BY name, config_file",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "listing sandbox state");
	if (config_file)
		sqlite3_bind_text(s, 1, config_file, -1, SQLITE_TRANSIENT);
	int rc;
	size_t cap = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			struct msb_state_row *p = realloc(*rows, cap * sizeof(*p));
			if (!p)
				goto oom;
			*rows = p;
		}
		if (read_row(s, &(*rows)[*n]) < 0)
			goto oom;
		(*n)++;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		msb_state_rows_free(*rows, *n);
		*rows = NULL;
		*n = 0;
		return db_err(st, err, "listing sandbox state");
	}
	return 0;
oom:
	sqlite3_finalize(s);
	msb_state_rows_free(*rows, *n);
	*rows = NULL;
	*n = 0;
	return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "listing %s", st->path);
}

void msb_state_row_clear(struct msb_state_row *r)
{
	free(r->name);
	free(r->config_file);
	free(r->config_last_modified);
	free(r->boot_id);
	free(r->rootfs_paths);
	free(r->config_hash);
	free(r->agent_socket);
	memset(r, 0, sizeof(*r));
}

void msb_state_rows_free(struct msb_state_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		msb_state_row_clear(&rows[i]);
	free(rows);
}

int msb_proc_start_time(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[1024];
	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields resume after
	 * the last ')'.  Field 3 (state) follows; start time is field 22. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -1;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p + 1, &end, 10);
	if (errno || end == p + 1)
		return -1;
	/* A zombie has exited: it does not count as running. */
	char state = 0;
	char *q = strrchr(buf, ')');
	if (q && q[1] == ' ')
		state = q[2];
	if (state == 'Z' || state == 'X')
		return -1;
	*ticks = v;
	return 0;
}

static void boot_id(char *buf, size_t len)
{
	buf[0] = '\0';
	_cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, len - 1);
	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
}

int msb_state_set_running(struct msb_state *st, const char *name, const char *config_file,
			  const char *config_last_modified, pid_t supervisor_pid, pid_t microvm_pid,
			  const char *rootfs_paths, struct msb_err *err)
{
	uint64_t sstart = 0, vstart = 0;
	if (msb_proc_start_time(supervisor_pid, &sstart) < 0)
		return msb_err_set(err, MSB_EK_STATE, 0,
				   "the supervisor pid %d of '%s' is not running",
				   (int)supervisor_pid, name);
	if (microvm_pid > 0 && msb_proc_start_time(microvm_pid, &vstart) < 0)
		return msb_err_set(err, MSB_EK_STATE, 0, "the VM pid %d of '%s' is not running",
				   (int)microvm_pid, name);
	char bid[64];
	boot_id(bid, sizeof(bid));
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(
		    st->db,
		    "INSERT INTO sandboxes (name, config_file, config_last_modified, status, "
		    "supervisor_pid, supervisor_start, microvm_pid, microvm_start, boot_id, "
		    "rootfs_paths) VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5, ?6, ?7, ?8, ?9) "
		    "ON CONFLICT (name, config_file) DO UPDATE SET "
		    "config_last_modified = excluded.config_last_modified, status = 'RUNNING', "
		    "supervisor_pid = excluded.supervisor_pid, supervisor_start = "
		    "excluded.supervisor_start, microvm_pid = excluded.microvm_pid, "
		    "microvm_start = excluded.microvm_start, boot_id = excluded.boot_id, "
		    "rootfs_paths = excluded.rootfs_paths, modified_at = strftime('%s','now')",
		    -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "recording sandbox state");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, config_last_modified ? config_last_modified : "", -1,
			  SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, supervisor_pid);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)sstart);
	sqlite3_bind_int64(s, 6, microvm_pid > 0 ? microvm_pid : 0);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)vstart);
	sqlite3_bind_text(s, 8, bid, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 9, rootfs_paths ? rootfs_paths : "", -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : db_err(st, err, "recording sandbox state");
}

static int simple_update(struct msb_state *st, const char *sql, const char *name,
			 const char *config_file, struct msb_err *err)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "updating sandbox state");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : db_err(st, err, "updating sandbox state");
}

int msb_state_set_stopped(struct msb_state *st, const char *name, const char *config_file,
			  struct msb_err *err)
{
	return simple_update(
		st,
		"UPDATE sandboxes SET status = 'STOPPED', supervisor_pid = 0, "
		"supervisor_start = 0, microvm_pid = 0, microvm_start = 0, agent_socket = '', "
		"modified_at = strftime('%s','now') WHERE name = ?1 AND config_file = ?2",
		name, config_file, err);
}

static int set_text(struct msb_state *st, const char *sql, const char *name,
		    const char *config_file, const char *value, struct msb_err *err)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "updating sandbox state");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, value ? value : "", -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : db_err(st, err, "updating sandbox state");
}

int msb_state_set_config_hash(struct msb_state *st, const char *name, const char *config_file,
			      const char *hash, struct msb_err *err)
{
	return set_text(
		st, "UPDATE sandboxes SET config_hash = ?3 WHERE name = ?1 AND config_file = ?2",
		name, config_file, hash, err);
}

int msb_state_set_agent_socket(struct msb_state *st, const char *name, const char *config_file,
			       const char *path, struct msb_err *err)
{
	return set_text(st,
			"UPDATE sandboxes SET agent_socket = ?3 WHERE name = ?1 AND config_file = "
			"?2",
			name, config_file, path, err);
}

int msb_state_delete(struct msb_state *st, const char *name, const char *config_file,
		     struct msb_err *err)
{
	return simple_update(st, "DELETE FROM sandboxes WHERE name = ?1 AND config_file = ?2", name,
			     config_file, err);
}

bool msb_state_row_alive(const struct msb_state_row *row)
{
	if (row->status != MSB_STATUS_RUNNING || row->supervisor_pid <= 0)
		return false;
	char bid[64];
	boot_id(bid, sizeof(bid));
	if (row->boot_id && row->boot_id[0] && bid[0] && strcmp(bid, row->boot_id) != 0)
		return false; /* recorded before a reboot */
	uint64_t t;
	if (msb_proc_start_time(row->supervisor_pid, &t) < 0 || t != row->supervisor_start)
		return false;
	/* A supervisor whose msb-vmm crashed is on its way out: the sandbox is
	 * stopped, whatever the supervisor has not yet written. */
	if (row->microvm_pid > 0 &&
	    (msb_proc_start_time(row->microvm_pid, &t) < 0 || t != row->microvm_start))
		return false;
	return true;
}

int msb_state_reconcile(struct msb_state *st, size_t *fixed, struct msb_err *err)
{
	struct msb_state_row *rows;
	size_t n;
	if (fixed)
		*fixed = 0;
	if (msb_state_list(st, NULL, &rows, &n, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (rows[i].status != MSB_STATUS_RUNNING || msb_state_row_alive(&rows[i]))
			continue;
		rc = msb_state_set_stopped(st, rows[i].name, rows[i].config_file, err);
		if (rc == 0 && fixed)
			(*fixed)++;
	}
	msb_state_rows_free(rows, n);
	return rc;
}

int msb_file_mtime_rfc3339(const char *path, char **out, struct msb_err *err)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return msb_err_sys(err, "reading the time of %s", path);
	struct tm tm;
	gmtime_r(&st.st_mtim.tv_sec, &tm);
	char date[32];
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	if (asprintf(out, "%s.%09ldZ", date, st.st_mtim.tv_nsec) < 0) {
		*out = NULL;
		return msb_err_set(err, MSB_EK_SYSTEM, ENOMEM, "formatting a time");
	}
	return 0;
}

int msb_state_latest_metrics(struct msb_state *st, const char *name, const char *config_file,
			     struct msb_metrics *m, bool *found, struct msb_err *err)
{
	*found = false;
	memset(m, 0, sizeof(*m));
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT m.cpu_usage, m.memory_usage, m.disk_usage, m.created_at, "
			       "m.cpu_usage IS NULL, m.memory_usage IS NULL, m.disk_usage IS NULL "
			       "FROM sandbox_metrics m JOIN sandboxes s ON s.id = m.sandbox_id "
			       "WHERE s.name = ?1 AND s.config_file = ?2 "
			       "ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "reading sandbox metrics");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		m->cpu_percent = sqlite3_column_int(s, 4) ? -1 : sqlite3_column_double(s, 0);
		m->memory_bytes = sqlite3_column_int(s, 5) ? -1 : sqlite3_column_int64(s, 1);
		m->disk_bytes = sqlite3_column_int(s, 6) ? -1 : sqlite3_column_int64(s, 2);
		m->at = sqlite3_column_int64(s, 3);
		*found = true;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_err(st, err, "reading sandbox metrics");
	return 0;
}

int msb_state_add_metrics(struct msb_state *st, const char *name, const char *config_file,
			  const struct msb_metrics *m, struct msb_err *err)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(st->db,
			       "INSERT INTO sandbox_metrics (sandbox_id, cpu_usage, memory_usage, "
			       "disk_usage, created_at) SELECT id, ?3, ?4, ?5, ?6 FROM sandboxes "
			       "WHERE name = ?1 AND config_file = ?2",
			       -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "recording sandbox metrics");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	if (m->cpu_percent >= 0)
		sqlite3_bind_double(s, 3, m->cpu_percent);
	else
		sqlite3_bind_null(s, 3);
	if (m->memory_bytes >= 0)
		sqlite3_bind_int64(s, 4, m->memory_bytes);
	else
		sqlite3_bind_null(s, 4);
	if (m->disk_bytes >= 0)
		sqlite3_bind_int64(s, 5, m->disk_bytes);
	else
		sqlite3_bind_null(s, 5);
	sqlite3_bind_int64(s, 6, m->at);
	int rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return db_err(st, err, "recording sandbox metrics");
	/* Keep the newest 100 per sandbox: status samples on every call. */
	if (sqlite3_prepare_v2(
		    st->db,
		    "DELETE FROM sandbox_metrics WHERE sandbox_id = (SELECT id FROM "
		    "sandboxes WHERE name = ?1 AND config_file = ?2) AND id NOT IN "
		    "(SELECT m.id FROM sandbox_metrics m JOIN sandboxes x ON x.id = "
		    "m.sandbox_id WHERE x.name = ?1 AND x.config_file = ?2 ORDER BY m.id "
		    "DESC LIMIT 100)",
		    -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "recording sandbox metrics");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, config_file, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : db_err(st, err, "recording sandbox metrics");
}
