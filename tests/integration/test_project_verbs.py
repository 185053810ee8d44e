"""The project verbs that need no VM through the real `msb` binary: up, down,
apply, status|ps, log, clean, install|i/uninstall, self uninstall.  Running
sandboxes are played by stand-in supervisor processes recorded in the state
DB as `msb run -d` records itself (pid, start time, boot id), so stopping,
ordering, timeouts and crash detection are checked without booting a guest."""

import os
import shutil
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, scaled

MSB = BIN / "msb"
USAGE, NOT_FOUND, STATE, TIMEOUT = 2, 3, 4, 5

SANDBOXFILE = """# two sandboxes, web needs db
sandboxes:
  web:
    image: busybox
    memory: 256
    cpus: 2
    depends_on: [db]
  db:
    image: busybox
"""

VERBS = ["up", "down", "apply", "status", "ps", "stat", "log", "clean", "shell", "install", "i",
         "uninstall", "self"]


def msb(*args, cwd=None, env=None, input=None, timeout=30):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(MSB), *map(str, args)], cwd=cwd, env=e, capture_output=True,
                          text=True, input=input, timeout=scaled(timeout))


def tree(d):
    out = {}
    for p in sorted(Path(d).rglob("*")):
        out[str(p.relative_to(d))] = p.read_bytes() if p.is_file() else None
    return out


def start_ticks(pid):
    s = Path(f"/proc/{pid}/stat").read_text()
    return int(s[s.rindex(")") + 2:].split()[19])


BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

# A stand-in supervisor: on SIGTERM it appends its name to a file, then exits
# (or, with IGNORE, ignores SIGTERM as a hung one would).
SUPERVISOR = r"""
import os, signal, sys, time
name, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def term(sig, frame):
    with open(out, "a") as f:
        f.write(name + "\n")
    if mode != "IGNORE":
        sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


class Project:
    def __init__(self, path):
        self.path = path
        self.stops = path / "stops.txt"
        self.procs = []

    def run(self, *args, **kw):
        return msb(*args, cwd=self.path, **kw)

    def fake_running(self, name, mode="EXIT", vm=None, ready=True):
        """Record `name` as RUNNING with a live stand-in supervisor (and VM pid);
        ready: its guest answered (the supervisor recorded an agent socket)."""
        p = subprocess.Popen([sys.executable, "-c", SUPERVISOR, name, str(self.stops), mode],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        self.procs.append(p)
        vm = vm or p
        db = sqlite3.connect(self.path / ".menv" / "sandbox.db")
        db.execute("INSERT OR REPLACE INTO sandboxes (name, config_file, config_last_modified, "
                   "status, supervisor_pid, supervisor_start, microvm_pid, microvm_start, "
                   "boot_id, agent_socket, created_at, modified_at) VALUES (?, 'Sandboxfile', "
                   "'', 'RUNNING', ?, ?, ?, ?, ?, ?, strftime('%s','now'), strftime('%s','now'))",
                   (name, p.pid, start_ticks(p.pid), vm.pid, start_ticks(vm.pid), BOOT_ID,
                    str(self.path / "no-agent.sock") if ready else ""))
        db.commit()
        db.close()
        return p

    def rows(self):
        db = sqlite3.connect(self.path / ".menv" / "sandbox.db")
        r = {n: (s, sp) for n, s, sp in
             db.execute("SELECT name, status, supervisor_pid FROM sandboxes")}
        db.close()
        return r

    def set_hash(self, name, h):
        db = sqlite3.connect(self.path / ".menv" / "sandbox.db")
        db.execute("UPDATE sandboxes SET config_hash = ? WHERE name = ?", (h, name))
        db.commit()
        db.close()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def proj(tmp_path):
    r = msb("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "Sandboxfile").write_text(SANDBOXFILE)
    p = Project(tmp_path)
    yield p
    p.cleanup()


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb):
    r = msb(verb, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: msb ")


@pytest.mark.parametrize("args", [["up"], ["down"], ["apply"], ["status"], ["log", "web"]])
def test_not_a_project(tmp_path, args):
    r = msb(*args, cwd=tmp_path)
    assert r.returncode == NOT_FOUND, r.stderr
    assert "msb init" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["up"], ["down"], ["apply"], ["status"], ["log", "web"],
                                  ["clean", "web"]])
def test_bad_sandboxfile_names_line_and_column(proj, args):
    (proj.path / "Sandboxfile").write_text("sandboxes:\n  web:\n    image: x\n    cpus: many\n")
    before = tree(proj.path)
    r = proj.run(*args)
    assert r.returncode == USAGE, r.stderr
    assert "Sandboxfile:4:11: 'cpus'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert tree(proj.path) == before


def test_cycle_refused_with_its_line(proj):
    (proj.path / "Sandboxfile").write_text(
        "sandboxes:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n"
        "    depends_on: [a]\n")
    before = tree(proj.path)
    r = proj.run("up")
    assert r.returncode == USAGE
    assert "Sandboxfile:" in r.stderr and "cycle" in r.stderr
    assert tree(proj.path) == before


@pytest.mark.parametrize("args", [["up", "nope"], ["down", "nope"], ["status", "nope"],
                                  ["log", "nope"], ["clean", "nope"], ["up", "web", "nope"],
                                  ["shell", "nope"]])
def test_unknown_sandbox(proj, args):
    before = tree(proj.path)
    r = proj.run(*args)
    assert r.returncode == NOT_FOUND, r.stderr
    assert "'nope'" in r.stderr
    assert tree(proj.path) == before


def test_path_option(proj, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("cwd")
    for opt in ("-p", "--path", "-f", "--file"):
        r = msb("status", opt, proj.path, cwd=elsewhere)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1].split()[:2] == ["web", "stopped"]
    assert msb("list", "-p", proj.path, cwd=elsewhere).stdout.splitlines()[1].startswith("web")
    r = msb("init", "--path", elsewhere / "new", cwd=elsewhere)
    assert r.returncode == 0 and (elsewhere / "new" / "Sandboxfile").exists()
    r = msb("rm", "web", "-p", proj.path, cwd=elsewhere)
    assert r.returncode == 0 and "web:" not in (proj.path / "Sandboxfile").read_text()


def test_status_table(proj):
    r = proj.run("status")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PID", "CPUS", "MEMORY", "UPTIME", "CPU%",
                                "MEM", "USE", "DISK"]
    assert lines[1].split() == ["web", "stopped", "-", "2", "256", "MiB", "-", "-", "-", "-"]
    assert lines[2].split() == ["db", "stopped", "-", "1", "1024", "MiB", "-", "-", "-", "-"]
    assert proj.run("ps", "db").stdout.splitlines()[1].split()[0] == "db"


def test_status_watch(proj):
    # Ctrl-C as on a terminal: a runner started in the background (no job control) hands its
    # children SIGINT ignored, and msb keeps what it inherits.
    p = subprocess.Popen([str(MSB), "status", "--watch"], cwd=proj.path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # two screens (2 s apart), however slow the machine is, then Ctrl-C
    out = b""
    deadline = time.monotonic() + scaled(30)
    while out.count(b"\033[H\033[2J") < 2 and time.monotonic() < deadline:
        if select.select([p.stdout], [], [], 0.5)[0]:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=scaled(10))
    out = (out + rest).decode()
    assert out.count("\033[H\033[2J") >= 2
    assert out.count("NAME ") >= 2 and "(every 2 s; Ctrl-C to stop)" in out


def test_status_running_and_disk(proj):
    sup = proj.fake_running("web")
    rw = proj.path / ".menv" / "rw" / "Sandboxfile" / "web"
    rw.mkdir(parents=True)
    (rw / "rw.ext4").write_bytes(b"x" * 3 * 1024 * 1024)
    time.sleep(1.1)
    r = proj.run("status", "web")
    assert r.returncode == 0, r.stderr
    cells = r.stdout.splitlines()[1].split()
    assert cells[:3] == ["web", "running", str(sup.pid)]
    assert cells[6][-1] == "s"  # uptime, e.g. "1s"
    assert cells[-2:] == ["3.0", "MiB"]


def test_status_corrects_dead_rows(proj):
    sup = proj.fake_running("web")
    sup.kill()
    sup.wait()
    r = proj.run("status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:3] == ["web", "stopped", "-"]
    assert "'web' was recorded as running" in r.stderr
    assert proj.rows()["web"] == ("STOPPED", 0)
    assert proj.run("status").stderr == ""


def test_status_crashed_vm_reads_stopped(proj):
    vm = subprocess.Popen(["sleep", "600"])
    proj.fake_running("db", vm=vm)
    assert proj.run("status", "db").stdout.splitlines()[1].split()[1] == "running"
    vm.kill()
    vm.wait()
    r = proj.run("status", "db")
    assert r.stdout.splitlines()[1].split()[1] == "stopped"
    assert proj.rows()["db"][0] == "STOPPED"


def test_status_shows_removed_sandboxes_with_state(proj):
    proj.fake_running("old")
    r = proj.run("status")
    assert "old   running (removed)" in r.stdout or "running (removed)" in r.stdout


def test_down_stops_dependents_first(proj):
    web, db = proj.fake_running("web"), proj.fake_running("db")
    r = proj.run("down")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Stopped sandbox 'web'\nStopped sandbox 'db'\n"
    assert proj.stops.read_text() == "web\ndb\n"
    assert web.wait(5) == 0 and db.wait(5) == 0
    assert proj.rows() == {"web": ("STOPPED", 0), "db": ("STOPPED", 0)}
    r = proj.run("down")
    assert r.returncode == 0 and "No sandbox" in r.stdout


def test_down_named_and_removed(proj):
    proj.fake_running("web")
    proj.fake_running("db")
    proj.fake_running("gone")  # no longer in the Sandboxfile
    r = proj.run("down", "db")
    assert r.returncode == 0, r.stderr
    assert proj.stops.read_text() == "db\n"
    r = proj.run("down", "gone")
    assert r.returncode == 0, r.stderr
    assert proj.stops.read_text() == "db\ngone\n"
    r = proj.run("down", "db")
    assert r.returncode == 0 and "'db' is not running" in r.stdout


def test_lifecycle_verbs_take_turns(proj):
    import fcntl
    proj.fake_running("db")
    lock = os.open(proj.path / ".menv", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.Popen([str(MSB), "down"], cwd=proj.path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert p.poll() is None and not proj.stops.exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    out, err = p.communicate(timeout=scaled(30))
    assert p.returncode == 0 and out == "Stopped sandbox 'db'\n"
    assert "another msb up/down/apply/clean works on" in err


def test_down_timeout_kills(proj):
    sup = proj.fake_running("db", mode="IGNORE")
    t0 = time.monotonic()
    r = proj.run("down", "-t", "1")
    assert r.returncode == TIMEOUT, r.stderr
    assert "did not power off in order within 1 s" in r.stderr
    assert sup.wait(5) == -signal.SIGKILL
    assert time.monotonic() - t0 < 15
    assert proj.rows()["db"] == ("STOPPED", 0)
    assert proj.run("down", "-t", "0").returncode == USAGE


def test_up_skips_running_and_reports_a_failed_start(proj):
    proj.fake_running("db")
    (proj.path / "Sandboxfile").write_text(SANDBOXFILE.replace(
        "    depends_on: [db]\n", "    depends_on: [db]\n    volumes: [/data]\n"))
    r = proj.run("up")
    assert r.returncode == STATE
    assert "Sandbox 'db' is already running" in r.stdout
    # msb run's own refusal (the volume's host directory is missing), then up's summary.
    assert "create it or fix the path" in r.stderr
    assert "sandbox 'web' did not start" in r.stderr
    assert proj.stops.exists() is False


def mtime_stamp(path):
    """The file's mtime as `msb run` records it (config_last_modified)."""
    st = os.stat(path)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime)) + \
        ".%09dZ" % (st.st_mtime_ns % 1_000_000_000)


def set_started_from_current_file(proj):
    db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
    db.execute("UPDATE sandboxes SET config_last_modified = ?",
               (mtime_stamp(proj.path / "Sandboxfile"),))
    db.commit()
    db.close()


def test_up_waits_for_a_booting_dependency(proj):
    """web depends on db: db runs but its guest has not answered yet (no agent
    socket recorded), so web starts only once it has (here web's start then
    fails at once on its volume: no VM needed)."""
    import threading
    (proj.path / "Sandboxfile").write_text(SANDBOXFILE.replace(
        "    depends_on: [db]\n", "    depends_on: [db]\n    volumes: [/data]\n"))
    proj.fake_running("db", ready=False)

    def ready():
        time.sleep(1.5)
        db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
        db.execute("UPDATE sandboxes SET agent_socket = '/x' WHERE name = 'db'")
        db.commit()
        db.close()
    t = threading.Thread(target=ready)
    t.start()
    t0 = time.monotonic()
    r = proj.run("up", "web")
    t.join()
    assert time.monotonic() - t0 >= 1.5
    assert r.stdout.splitlines()[:2] == [
        "Sandbox 'db' is already running (msb-vmm pid %d)" % proj.procs[0].pid,
        "Waiting for sandbox 'db' to be up before starting 'web'"]
    assert "create it or fix the path" in r.stderr
    # A dependency that stops while booting does not hold its dependents forever.
    proj.rows()
    db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
    db.execute("UPDATE sandboxes SET agent_socket = '' WHERE name = 'db'")
    db.commit()
    db.close()
    threading.Timer(1.0, proj.procs[0].kill).start()
    r = proj.run("up", "web")
    assert "Waiting for sandbox 'db'" in r.stdout
    assert "create it or fix the path" in r.stderr


def test_apply(proj):
    # web gets a volume of a missing host directory, so that its restart fails at once in
    # `msb run` (no VM here).
    (proj.path / "Sandboxfile").write_text(SANDBOXFILE.replace(
        "    depends_on: [db]\n", "    depends_on: [db]\n    volumes: [/data]\n"))
    web = proj.fake_running("web")
    db = proj.fake_running("db")
    proj.fake_running("gone")
    # All rows without a hash were started from the current file (unchanged)...
    set_started_from_current_file(proj)
    # ...except web, whose recorded hash is not the one of its entry now.
    proj.set_hash("web", "0123456789abcdef")
    before = tree(proj.path / ".menv" / "rw")
    r = proj.run("apply")
    assert r.stdout.splitlines() == [
        "Sandbox 'gone' is no longer in Sandboxfile", "Stopped sandbox 'gone'",
        "Sandbox 'web' changed since it started: restarting it", "Stopped sandbox 'web'"]
    assert r.returncode == STATE
    assert "create it or fix the path" in r.stderr
    assert "sandbox 'web' did not start" in r.stderr
    assert proj.stops.read_text() == "gone\nweb\n"
    assert web.wait(5) == 0 and db.poll() is None
    assert tree(proj.path / ".menv" / "rw") == before


def test_apply_nothing_to_do(proj):
    proj.fake_running("web")
    proj.fake_running("db")
    set_started_from_current_file(proj)
    r = proj.run("apply")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Nothing to do")
    assert not proj.stops.exists()
    # A new mtime without a recorded hash: the file may have changed.
    os.utime(proj.path / "Sandboxfile", (1, 1))
    (proj.path / "Sandboxfile").write_text(SANDBOXFILE.replace("image: busybox\n",
                                                               "image: busybox\n    volumes: [/d]\n"))
    r = proj.run("apply")
    assert "Sandbox 'db' changed since it started" in r.stdout
    assert "create it or fix the path" in r.stderr and r.returncode == STATE


def test_log_tail_and_rotation(proj):
    d = proj.path / ".menv" / "log" / "Sandboxfile"
    d.mkdir(parents=True, exist_ok=True)
    (d / "web.log.old").write_text("o1\no2\no3\n")
    (d / "web.log").write_text("n1\nn2\n")
    assert proj.run("log", "web").stdout == "o1\no2\no3\nn1\nn2\n"
    assert proj.run("log", "web", "-t", "1").stdout == "n2\n"
    assert proj.run("log", "web", "-t", "3").stdout == "o3\nn1\nn2\n"
    assert proj.run("log", "web", "--tail", "0").stdout == ""
    assert proj.run("log", "web", "-t", "99").stdout == "o1\no2\no3\nn1\nn2\n"
    assert proj.run("log", "web", "-t", "x").returncode == USAGE
    r = proj.run("log", "db")
    assert r.returncode == 0 and "no log yet" in r.stderr


def test_log_follow_across_rotation(proj):
    d = proj.path / ".menv" / "log" / "Sandboxfile"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "web.log"
    log.write_text("first\n")
    p = subprocess.Popen([str(MSB), "log", "web", "-F"], cwd=proj.path, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline() == "first\n"
        with open(log, "a") as f:
            f.write("second\n")
        assert p.stdout.readline() == "second\n"
        with open(log, "a") as f:
            f.write("third\n")
        log.rename(d / "web.log.old")
        log.write_text("fourth\n")
        assert p.stdout.readline() == "third\n"
        assert p.stdout.readline() == "fourth\n"
    finally:
        p.kill()
        p.wait()


def test_clean(proj):
    rw = proj.path / ".menv" / "rw" / "Sandboxfile" / "web"
    rw.mkdir(parents=True)
    (rw / "rw.ext4").write_text("data")
    proj.fake_running("web")
    before = tree(proj.path)
    r = proj.run("clean", "web")
    assert r.returncode == STATE and "still in" in r.stderr
    assert tree(proj.path) == before
    (proj.path / "Sandboxfile").write_text("sandboxes:\n  db:\n    image: busybox\n")
    before = tree(proj.path)
    r = proj.run("clean", "web")
    assert r.returncode == STATE and "is running" in r.stderr and "--force" in r.stderr
    assert tree(proj.path) == before
    r = proj.run("clean", "web", "--force")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Stopped sandbox 'web'\nCleaned sandbox 'web'\n"
    assert not rw.exists() and "web" not in proj.rows()
    r = proj.run("clean")
    assert r.returncode == STATE and (proj.path / ".menv").exists()
    proj.fake_running("db")
    r = proj.run("clean", "-F")
    assert r.returncode == 0, r.stderr
    assert not (proj.path / ".menv").exists()
    assert proj.stops.read_text() == "web\ndb\n"
    r = proj.run("clean")
    assert r.returncode == 0 and "Nothing to clean" in r.stdout
    r = proj.run("clean", "--user")
    assert r.returncode == USAGE and "msb self uninstall" in r.stderr


def test_shell_without_a_vm(proj):
    before = tree(proj.path)
    r = proj.run("shell")
    assert r.returncode == USAGE and "msb shell NAME" in r.stderr
    r = proj.run("shell", "web~x")
    assert r.returncode == USAGE and "msb run NAME~SCRIPT" in r.stderr
    r = proj.run("shell", "web", "extra")
    assert r.returncode == USAGE and "after --" in r.stderr
    assert tree(proj.path) == before
    # Stopped: it becomes `msb run web~shell`, whose refusals are its own.
    (proj.path / "Sandboxfile").write_text(SANDBOXFILE.replace(
        "    depends_on: [db]\n", "    depends_on: [db]\n    volumes: [/data]\n"))
    r = proj.run("shell", "web", "--", "-c", "true")
    assert r.returncode == NOT_FOUND and "msb run: sandbox 'web': volume /data" in r.stderr
    # Running: joined through the socket its supervisor recorded.
    proj.fake_running("db")
    db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
    db.execute("UPDATE sandboxes SET agent_socket = ? WHERE name = 'db'",
               (str(proj.path / "no-such.sock"),))
    db.commit()
    db.close()
    r = proj.run("shell", "db", "--", "-c", "true")
    assert r.returncode != 0 and "joining sandbox 'db'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.fixture
def agent(tmp_path):
    """msb-init serving the agent protocol on a Unix socket (its host mode): the
    agent a running sandbox's supervisor records, without a VM."""
    path = tmp_path / "agent.sock"
    p = subprocess.Popen([str(BIN / "msb-init"), "--serve-unix", str(path)],
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + scaled(10)
    while not path.exists():
        assert p.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    yield path
    p.terminate()
    p.wait(10)


def with_agent(proj, name, sock):
    proj.fake_running(name)
    db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
    db.execute("UPDATE sandboxes SET agent_socket = ? WHERE name = ?", (str(sock), name))
    db.commit()
    db.close()


def test_status_asks_the_agent_for_metrics(proj, agent):
    with_agent(proj, "db", agent)
    r = proj.run("status", "db")
    assert r.returncode == 0, r.stderr
    head, cells = r.stdout.splitlines()[0], r.stdout.splitlines()[1]
    cpu = cells[head.index("CPU%"):head.index("MEM USE")].strip()
    mem = cells[head.index("MEM USE"):head.index("DISK")].strip()
    assert float(cpu) >= 0
    assert mem.split()[1] in ("MiB", "GiB"), mem
    db = sqlite3.connect(proj.path / ".menv" / "sandbox.db")
    n, used = db.execute("SELECT count(*), max(memory_usage) FROM sandbox_metrics").fetchone()
    db.close()
    assert n == 1 and used > 0
    # A sandbox whose agent does not answer shows "-" (and status still returns).
    proj.fake_running("web")
    t0 = time.monotonic()
    r = proj.run("status", "web")
    head, cells = r.stdout.splitlines()[0], r.stdout.splitlines()[1]
    assert cells[head.index("CPU%"):head.index("DISK")].split() == ["-", "-"]
    assert time.monotonic() - t0 < scaled(10)


def test_shell_joins_a_running_sandbox(proj, agent):
    with_agent(proj, "db", agent)
    r = proj.run("shell", "db", "--", "-c", "echo joined $0; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "joined /bin/sh\n"
    assert proj.rows()["db"][0] == "RUNNING"


def test_shell_on_a_terminal_gets_a_pty(proj, agent):
    import pty
    with_agent(proj, "db", agent)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(proj.path)
        os.execv(str(MSB), [str(MSB), "shell", "db"])
    os.write(fd, b"tty; echo sum=$((20+22)); exit 5\n")
    out = b""
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 5, out
    assert b"/dev/pts/" in out and b"sum=42" in out, out


# ---- install / uninstall / self uninstall -----------------------------------

@pytest.fixture
def homes(tmp_path):
    """A private msb (a copy, so that the launchers name it), bin dir and home."""
    bindir = tmp_path / "bin"
    own = tmp_path / "msb-copy"
    own.mkdir()
    shutil.copy2(MSB, own / "msb")
    env = {"MSB_BIN_DIR": str(bindir), "MICROSANDBOX_HOME": str(tmp_path / "home"),
           "PATH": f"{bindir}:/usr/bin:/bin"}
    return tmp_path, own / "msb", bindir, env


def own_msb(homes, *args, input=None):
    tmp, exe, _, env = homes
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([str(exe), *args], env=e, capture_output=True, text=True,
                          input=input, timeout=scaled(30))


def test_install_writes_a_launcher_that_runs_exe(homes):
    tmp, exe, bindir, env = homes
    r = own_msb(homes, "install", "--no-pull", "microsandbox/python:3.11", "--memory", "512",
                "--env", "GREETING=it's me", "--", "-u")
    assert r.returncode == 0, r.stderr
    launcher = bindir / "python"
    assert f"Installed 'microsandbox/python:3.11' as {launcher}" in r.stdout
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n# MSB-ALIAS: python\n")
    # Swap the msb copy for a script that prints its argv: the launcher's exec line.
    exe.unlink()
    exe.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n")
    exe.chmod(0o755)
    out = subprocess.run([str(launcher), "-c", "print('a b')", "$HOME"], capture_output=True,
                         text=True, env=dict(os.environ, **env)).stdout
    assert out.splitlines() == ["[exe]", "[--memory]", "[512]", "[--env]", "[GREETING=it's me]",
                                "[microsandbox/python:3.11]", "[--]", "[-u]", "[-c]",
                                "[print('a b')]", "[$HOME]"]


def test_install_names_and_refusals(homes):
    tmp, exe, bindir, env = homes
    r = own_msb(homes, "i", "--no-pull", "ghcr.io/acme/tool@sha256:" + "a" * 64, "--script",
                "lint")
    assert r.returncode == 0, r.stderr
    assert (bindir / "lint").read_text().count("'ghcr.io/acme/tool@sha256:" + "a" * 64 +
                                                "~lint'") == 1
    r = own_msb(homes, "install", "--no-pull", "busybox", "mybox")
    assert r.returncode == 0 and (bindir / "mybox").exists()
    before = tree(tmp)
    for args, code, text in [
        (["busybox", "mybox"], 4, "already installed"),
        (["busybox", "sh"], 4, "already a command"),
        (["busybox", "bad/name"], 2, "not a valid command name"),
        (["busybox", "--cpus", "0"], 2, "--cpus"),
        (["busybox", "--env", "=x"], 2, "--env"),
        (["busybox", "-v", "/nonexistent-msb-a:/b"], 2, "create it or fix the path"),
        (["busybox~s", "--script", "t"], 2, "once"),
        ([], 2, "no image"),
    ]:
        r = own_msb(homes, "install", "--no-pull", *args)
        assert r.returncode == code, (args, r.stderr)
        assert text in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 2
    assert tree(tmp) == before
    r = own_msb(homes, "install", "--no-pull", "alpine", "mybox", "--force")
    assert r.returncode == 0, r.stderr
    assert "'alpine'" in (bindir / "mybox").read_text()
    # Not ours: never replaced, never removed.
    (bindir / "foreign").write_text("#!/bin/sh\necho mine\n")
    r = own_msb(homes, "install", "--no-pull", "busybox", "foreign", "--force")
    assert r.returncode == 4 and "not an msb launcher" in r.stderr
    r = own_msb(homes, "uninstall", "foreign")
    assert r.returncode == STATE and (bindir / "foreign").read_text() == "#!/bin/sh\necho mine\n"
    r = own_msb(homes, "uninstall", "nothere")
    assert r.returncode == NOT_FOUND
    r = own_msb(homes, "uninstall", "mybox", "lint")
    assert r.returncode == 0, r.stderr
    assert not (bindir / "mybox").exists() and not (bindir / "lint").exists()


def test_install_finds_a_stored_image(homes):
    """Without --no-pull the image must be in the store (or be pulled): here it
    is imported first, so nothing goes to the network."""
    tmp, exe, bindir, env = homes
    from conftest import TOP
    out = subprocess.run([str(TOP / "scripts" / "test-images"), "busybox"], capture_output=True,
                         text=True, timeout=scaled(600))
    assert out.returncode == 0, out.stderr
    r = own_msb(homes, "image", "import", out.stdout.split()[-1], "microsandbox/busybox")
    assert r.returncode == 0, r.stderr
    r = own_msb(homes, "install", "microsandbox/busybox", "bb", "--memory", "128")
    assert r.returncode == 0, r.stderr
    assert "exe '--memory' '128' 'microsandbox/busybox' --" in (bindir / "bb").read_text()


def test_install_pulls_and_reports_a_missing_image(homes):
    tmp, exe, bindir, env = homes
    r = own_msb(homes, "install", "localhost:1/nothing/here", "x")
    assert r.returncode != 0
    assert "nothing/here" in r.stderr
    assert not (bindir / "x").exists()


def test_self_uninstall(homes):
    tmp, exe, bindir, env = homes
    home = Path(env["MICROSANDBOX_HOME"])
    (home / "layers").mkdir(parents=True)
    (home / "oci.db").write_text("x")
    assert own_msb(homes, "install", "--no-pull", "busybox", "bb").returncode == 0
    (bindir / "foreign").write_text("keep\n")
    r = own_msb(homes, "self", "uninstall", input="n\n")
    assert r.returncode == 1 and "Nothing was removed" in r.stdout
    assert str(home) in r.stdout and f"{bindir}/bb" in r.stdout
    assert home.exists() and (bindir / "bb").exists()
    r = own_msb(homes, "self", "uninstall", "--yes")
    assert r.returncode == 0, r.stderr
    assert not home.exists() and not (bindir / "bb").exists()
    assert (bindir / "foreign").read_text() == "keep\n"
    r = own_msb(homes, "self", "uninstall", "-y")
    assert r.returncode == 0 and "Nothing to remove" in r.stdout
    e = dict(env, MICROSANDBOX_HOME=str(tmp))
    r = subprocess.run([str(MSB), "self", "uninstall", "-y"], capture_output=True, text=True,
                       env=dict(os.environ, **e, HOME=str(tmp)))
    assert r.returncode == USAGE and "refusing" in r.stderr
    assert tmp.exists()
    assert msb("self").returncode == USAGE
    assert msb("self", "upgrade").returncode == USAGE
