"""File requests and METRICS of the agent protocol against the real msb-init in
host mode (`msb-init --serve-unix PATH`; guest paths are host paths then),
driven through msb-agent (the C client library) and through the independent
Python wire implementation of test_agent_host.py, which also sends hostile
frames (docs/agent-protocol.md, "Files", "Metrics")."""

import hashlib
import os
import struct
import subprocess
import threading
import time

import pytest

from test_agent_host import (BIN, DATA, EOF, ERROR, OK, SCALE, WINDOW, Conn, agent,  # noqa: F401
                             agent_tool, field, frame, parse_fields, rss_kib, u32)

FILE_READ, FILE_WRITE, FILE_LIST, FILE_STAT, FILE_MKDIR, FILE_REMOVE = range(0x30, 0x36)
FILE_INFO, FILE_ENTRIES, FILE_SYMLINK, METRICS = 0x36, 0x37, 0x38, 0x40
T_CWD, T_PATH, T_MODE, T_PARENTS, T_RECURSIVE, T_FOLLOW, T_ENTRY = 22, 70, 71, 72, 73, 74, 75
T_ENT_NAME, T_ENT_TYPE, T_ENT_SIZE, T_ENT_MODE, T_ENT_MTIME, T_ENT_LINK = 76, 77, 78, 79, 80, 81
T_INTERVAL_MS, T_CPU_X100, T_NCPUS = 100, 101, 102
T_ERR_KIND, T_ERR_MSG, T_INCREMENT = 10, 12, 50
E_BAD_REQUEST, E_UNSUPPORTED, E_NOT_FOUND, E_PERMISSION, E_LIMIT = 2, 3, 4, 8, 7
INITIAL_WINDOW = 256 << 10
LIST_MAX = 65536


def sha(b):
    return hashlib.sha256(b).hexdigest()


def leftovers(d):
    return [n for n in os.listdir(d) if n.startswith(".msb-upload-")]


def recv_until_final(c, id_, timeout=30):
    """Frames of request id_ until its last one (OK, ERROR, EOF, INFO of a STAT)."""
    got = []
    while True:
        t, i, stream, p = c.recv(timeout)
        if i != id_:
            continue
        got.append((t, stream, p))
        if t in (OK, ERROR, EOF, METRICS) or (t == FILE_INFO and stream == 0):
            return got


# ---- through msb-agent ---------------------------------------------------------------------
def test_64_mib_round_trip_streams_with_bounded_memory(agent, tmp_path):
    data = os.urandom(64 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    dst = tmp_path / "deep" / "er" / "copy.bin"
    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(agent.pid))
            time.sleep(0.02)

    w = threading.Thread(target=watch)
    w.start()
    try:
        t0 = time.time()
        with open(src, "rb") as f:
            r = subprocess.run([os.path.join(BIN, "msb-agent"), "--vsock", agent.path, "write",
                                "--parents", str(dst)], stdin=f, capture_output=True,
                               timeout=120 * SCALE)
        up = time.time() - t0
        assert r.returncode == 0, r.stderr
        t0 = time.time()
        r = agent_tool(agent, "read", str(dst), timeout=120)
        down = time.time() - t0
    finally:
        stop.set()
        w.join()
    assert r.returncode == 0, r.stderr
    assert sha(r.stdout) == sha(data)
    assert sha(dst.read_bytes()) == sha(data)
    assert leftovers(dst.parent) == []
    # Neither direction holds the file: msb-init stays far below 64 MiB.
    assert peak[0] < 24 * 1024, f"msb-init RSS peaked at {peak[0]} KiB"
    print(f"64 MiB up {up:.2f} s, down {down:.2f} s, msb-init peak RSS {peak[0]} KiB")


def test_binary_bytes_empty_file_and_mode(agent, tmp_path):
    data = bytes(range(256)) * 1000 + b"\0\r\n\xff"
    p = tmp_path / "bin"
    r = agent_tool(agent, "write", "--mode", "0751", str(p), stdin=data)
    assert r.returncode == 0, r.stderr
    assert p.read_bytes() == data
    assert oct(p.stat().st_mode & 0o7777) == "0o751"
    assert agent_tool(agent, "read", str(p)).stdout == data
    # Replacing keeps nothing of the old content; an empty upload is an empty file.
    assert agent_tool(agent, "write", str(p), stdin=b"").returncode == 0
    assert p.read_bytes() == b"" and oct(p.stat().st_mode & 0o7777) == "0o644"
    r = agent_tool(agent, "read", str(p))
    assert (r.returncode, r.stdout) == (0, b"")


def test_errors_say_what_happened(agent, tmp_path):
    r = agent_tool(agent, "read", str(tmp_path / "missing"))
    assert r.returncode == 3 and b"No such file" in r.stderr, r
    r = agent_tool(agent, "read", str(tmp_path))
    assert r.returncode == 2 and b"is a directory" in r.stderr, r
    r = agent_tool(agent, "write", str(tmp_path), stdin=b"x")
    assert r.returncode == 2 and b"is a directory" in r.stderr, r
    r = agent_tool(agent, "write", str(tmp_path / "no" / "parent"), stdin=b"x")
    assert r.returncode == 3 and b"No such file" in r.stderr, r
    r = agent_tool(agent, "ls", str(tmp_path / "missing"))
    assert r.returncode == 3, r
    (tmp_path / "f").write_bytes(b"x")
    r = agent_tool(agent, "ls", str(tmp_path / "f"))
    assert r.returncode == 2 and b"not a directory" in r.stderr, r
    r = agent_tool(agent, "read", "/dev/null")
    assert r.returncode == 2 and b"not a regular file" in r.stderr, r
    if os.geteuid() == 0:
        unreadable, unwritable = "/proc/1/mem", "/sys/kernel/msb-test"
    else:
        (tmp_path / "locked").write_bytes(b"x")
        os.chmod(tmp_path / "locked", 0)
        os.mkdir(tmp_path / "ro", 0o500)
        unreadable, unwritable = str(tmp_path / "locked"), str(tmp_path / "ro" / "x")
    r = agent_tool(agent, "read", unreadable)
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r
    r = agent_tool(agent, "write", unwritable, stdin=b"x")
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r


def test_list_stat_mkdir_remove(agent, tmp_path):
    tmp_path = tmp_path / "w"  # not beside the agent's socket
    tmp_path.mkdir()
    (tmp_path / "a.txt").write_bytes(b"hello")
    os.utime(tmp_path / "a.txt", (1700000000, 1700000000))
    os.mkdir(tmp_path / "sub")
    os.symlink("a.txt", tmp_path / "ln")
    r = agent_tool(agent, "ls", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = sorted((line.split("\t") for line in r.stdout.decode().splitlines()),
                  key=lambda row: row[4])
    assert rows[0] == ["file", "0644", "5", "1700000000", "a.txt"]
    assert rows[1][0] == "symlink" and rows[1][4:] == ["ln", "-> a.txt"]
    assert rows[2][0] == "dir" and rows[2][4] == "sub"
    assert len(rows) == 3
    r = agent_tool(agent, "stat", str(tmp_path / "ln"))
    assert r.stdout.decode().split("\t")[0] == "symlink"
    r = agent_tool(agent, "stat", "--follow", str(tmp_path / "ln"))
    assert r.stdout.decode().split("\t")[:3] == ["file", "0644", "5"]

    r = agent_tool(agent, "mkdir", str(tmp_path / "x" / "y"))
    assert r.returncode == 3, r
    r = agent_tool(agent, "mkdir", "-p", "--mode", "0700", str(tmp_path / "x" / "y"))
    assert r.returncode == 0 and oct((tmp_path / "x" / "y").stat().st_mode & 0o777) == "0o700"
    assert agent_tool(agent, "mkdir", "-p", str(tmp_path / "x" / "y")).returncode == 0
    r = agent_tool(agent, "mkdir", str(tmp_path / "x"))
    assert r.returncode == 4 and b"File exists" in r.stderr, r  # exists

    (tmp_path / "x" / "y" / "f").write_bytes(b"1")
    r = agent_tool(agent, "rm", str(tmp_path / "x"))
    assert r.returncode == 2 and b"not empty" in r.stderr, r
    assert agent_tool(agent, "rm", "-r", str(tmp_path / "x")).returncode == 0
    assert not (tmp_path / "x").exists()
    # A symlink is removed, not what it points to.
    assert agent_tool(agent, "rm", "-r", str(tmp_path / "ln")).returncode == 0
    assert (tmp_path / "a.txt").exists() and not (tmp_path / "ln").exists()
    assert agent_tool(agent, "rm", str(tmp_path / "gone")).returncode == 3
    r = agent_tool(agent, "rm", "-r", "/")
    assert r.returncode == 2 and b"root directory" in r.stderr, r

    assert agent_tool(agent, "ln", "../a.txt", str(tmp_path / "sub" / "l")).returncode == 0
    assert os.readlink(tmp_path / "sub" / "l") == "../a.txt"
    r = agent_tool(agent, "ln", "x", str(tmp_path / "sub" / "l"))
    assert r.returncode == 4 and b"File exists" in r.stderr, r
    r = agent_tool(agent, "write", "--mtime", "1234567890", str(tmp_path / "m"), stdin=b"m")
    assert r.returncode == 0 and os.stat(tmp_path / "m").st_mtime == 1234567890


def test_listing_beyond_the_limit_is_refused(agent, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(LIST_MAX + 1):
        open(d / str(i), "w").close()
    r = agent_tool(agent, "ls", str(d))
    assert r.returncode != 0 and b"more than 65536 entries" in r.stderr, r
    os.unlink(d / "0")
    r = agent_tool(agent, "ls", str(d))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == LIST_MAX


def test_metrics_see_a_busy_loop(agent):
    r = agent_tool(agent, "metrics")
    import json
    m = json.loads(r.stdout)
    assert m["interval_ms"] == 250 and m["ncpus"] == os.cpu_count()
    with open("/proc/meminfo") as f:
        total = int(f.readline().split()[1]) * 1024
    assert m["memory_total"] == total and 0 < m["memory_used"] < total
    st = os.statvfs("/")
    assert m["disk_total"] == st.f_blocks * st.f_frsize and 0 < m["disk_used"] <= m["disk_total"]
    assert m["processes"] > 3 and m["uptime_ms"] > 1000
    busy = subprocess.Popen([os.path.join(BIN, "msb-agent"), "--vsock", agent.path, "exec",
                             "--timeout", "20", "--no-stdin", "--", "sh", "-c",
                             "while :; do :; done"])
    try:
        time.sleep(1)
        r = agent_tool(agent, "metrics", "--interval", "1000")
        m = json.loads(r.stdout)
        # The loop alone keeps one CPU busy (the host's other load only adds).
        assert 80 <= m["cpu_percent"] <= 100 * m["ncpus"] + 1, m
        print(f"cpu with a busy loop: {m['cpu_percent']}% of {m['ncpus']} CPUs")
    finally:
        busy.kill()
        busy.wait()
    r = agent_tool(agent, "metrics", "--interval", "10001")
    assert r.returncode == 2


# ---- raw frames --------------------------------------------------------------------------
def start_upload(c, id_, path, mode=None):
    p = field(T_PATH, path)
    if mode is not None:
        p += u32(T_MODE, mode)
    c.send(frame(FILE_WRITE, id_, payload=p))


def test_interrupted_upload_leaves_nothing(agent, tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    # 1. The connection goes away in the middle.
    c = Conn.open(agent.path)
    start_upload(c, 1, str(target))
    c.send(frame(DATA, 1, 0, os.urandom(60000)))
    t, i, s, p = c.recv()
    assert (t, i, s) == (WINDOW, 1, 0)
    c.s.close()
    # 2. The host abandons it with ERROR (no reply comes).
    c = Conn.open(agent.path)
    start_upload(c, 2, str(target))
    c.send(frame(DATA, 2, 0, b"partial"))
    c.send(frame(ERROR, 2, payload=u32(T_ERR_KIND, 1)))
    # 3. Beyond the granted window (one frame larger than the credit): refused.
    start_upload(c, 3, str(target))
    c.send(frame(DATA, 3, 0, b"\0" * (INITIAL_WINDOW + 1)))
    got = recv_until_final(c, 3)
    assert got[-1][0] == ERROR and b"window" in parse_fields(got[-1][2])[T_ERR_MSG][0]
    # The connection still works; the old file is untouched, no temporary is left.
    c.send(frame(FILE_STAT, 4, payload=field(T_PATH, str(target))))
    assert recv_until_final(c, 4)[-1][0] == FILE_INFO
    deadline = time.time() + 5
    while leftovers(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path) == []
    assert target.read_bytes() == b"old"


def test_download_waits_for_credit(agent, tmp_path):
    (tmp_path / "big").write_bytes(os.urandom(2 << 20))
    c = Conn.open(agent.path)
    c.send(frame(FILE_READ, 1, payload=field(T_PATH, str(tmp_path / "big"))))
    t, i, s, p = c.recv()
    info = parse_fields(p)
    assert (t, s) == (FILE_INFO, 1) and struct.unpack("<Q", info[T_ENT_SIZE][0])[0] == 2 << 20
    got = 0
    c.s.settimeout(1.0 * SCALE)
    try:
        while True:
            t, i, s, p = c.recv(1)
            assert t == DATA and s == 1
            got += len(p)
    except (TimeoutError, OSError):
        pass
    assert got == INITIAL_WINDOW
    c.send(frame(WINDOW, 1, 1, u32(T_INCREMENT, 2 << 20)))
    frames = recv_until_final(c, 1)
    got += sum(len(p) for t, s, p in frames if t == DATA)
    assert frames[-1][0] == EOF and got == 2 << 20


def test_relative_paths_use_cwd_or_root(agent, tmp_path):
    (tmp_path / "rel").write_bytes(b"r")
    c = Conn.open(agent.path)
    c.send(frame(FILE_STAT, 1, payload=field(T_PATH, "rel") + field(T_CWD, str(tmp_path))))
    t, _, _, p = recv_until_final(c, 1)[-1], None, None, None
    assert t[0] == FILE_INFO and parse_fields(t[2])[T_ENT_NAME] == [b"rel"]
    rel_to_root = str(tmp_path).lstrip("/") + "/rel"
    c.send(frame(FILE_STAT, 2, payload=field(T_PATH, rel_to_root)))
    assert recv_until_final(c, 2)[-1][0] == FILE_INFO


@pytest.mark.parametrize("payload,kind", [
    (b"", E_BAD_REQUEST),                                        # no path
    (field(T_PATH, ""), E_BAD_REQUEST),                          # empty path
    (field(T_PATH, "/a\0b"), E_BAD_REQUEST),                     # NUL
    (field(T_PATH, "/x") + field(T_PATH, "/y"), E_BAD_REQUEST),  # repeated
    (field(T_PATH, "/" + "a" * 5000), E_BAD_REQUEST),            # too long
    (field(T_PATH, "/x") + field(T_MODE, b"\1\2"), E_BAD_REQUEST),  # wrong width
    (field(T_PATH, "/x") + u32(T_MODE, 0o10000), E_BAD_REQUEST),    # mode out of range
    (field(T_PATH, "/x") + field(T_CWD, ""), E_BAD_REQUEST),     # empty cwd
    (field(T_PATH, "/x") + field(0x8000 | 89, b""), E_UNSUPPORTED),  # unknown critical
])
def test_hostile_file_requests_are_refused(agent, tmp_path, payload, kind):
    c = Conn.open(agent.path)
    c.send(frame(FILE_MKDIR, 9, payload=payload))
    t, i, s, p = c.recv()
    assert (t, i) == (ERROR, 9)
    assert struct.unpack("<I", parse_fields(p)[T_ERR_KIND][0])[0] == kind
    # Another request's field is ignored, not obeyed; the connection goes on.
    c.send(frame(FILE_MKDIR, 10, payload=field(T_PATH, str(tmp_path / "d")) + u32(T_RECURSIVE, 1)))
    assert c.recv()[:2] == (OK, 10)
    c.send(frame(FILE_READ, 0, payload=field(T_PATH, "/etc/hostname")))
    assert c.recv()[:2] == (ERROR, 0)
    c.send(frame(METRICS, 11, payload=field(T_INTERVAL_MS, b"\0")))
    assert c.recv()[:2] == (ERROR, 11)
    # A symlink needs its target.
    c.send(frame(FILE_SYMLINK, 12, payload=field(T_PATH, str(tmp_path / "l"))))
    assert c.recv()[:2] == (ERROR, 12)
    assert not os.path.lexists(tmp_path / "l")


# ---- msb cp through a stand-in running sandbox ---------------------------------------------
# The state DB row of a running sandbox names its supervisor and its msb-vmm;
# msb cp finds the agent through msb-vmm's --vsock argument.  Here the
# supervisor is a sleeping process and "msb-vmm" another one whose command
# line carries --vsock pointing at the host-mode msb-init.
SLEEPER = "import time\nprint('ready', flush=True)\nwhile True: time.sleep(1)"
MSB = os.path.join(BIN, "msb")


def start_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[19])


@pytest.fixture
def sandbox(agent, tmp_path):
    yield from running_sandbox(tmp_path, agent.path)


def running_sandbox(tmp_path, vsock, recorded=False):
    """A project whose sandbox 'web' is RUNNING (stand-ins) with agent socket
    vsock: on the stand-in msb-vmm's command line, or (recorded) in the row's
    agent_socket only."""
    import sqlite3
    import sys
    proj = tmp_path / "proj"
    proj.mkdir()
    assert subprocess.run([MSB, "init"], cwd=proj, capture_output=True).returncode == 0
    (proj / "Sandboxfile").write_text("sandboxes:\n  web:\n    image: busybox\n"
                                      "  idle:\n    image: busybox\n")
    procs = [subprocess.Popen([sys.executable, "-c", SLEEPER, *extra], stdout=subprocess.PIPE,
                              text=True)
             for extra in ([], [] if recorded else ["--vsock", vsock])]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot_id = f.read().strip()
    db = sqlite3.connect(proj / ".menv" / "sandbox.db")
    db.execute("INSERT OR REPLACE INTO sandboxes (name, config_file, config_last_modified, "
               "status, supervisor_pid, supervisor_start, microvm_pid, microvm_start, "
               "boot_id, created_at, modified_at) VALUES ('web', 'Sandboxfile', '', 'RUNNING', "
               "?, ?, ?, ?, ?, strftime('%s','now'), strftime('%s','now'))",
               (procs[0].pid, start_ticks(procs[0].pid), procs[1].pid,
                start_ticks(procs[1].pid), boot_id))
    if recorded:
        db.execute("UPDATE sandboxes SET agent_socket = ? WHERE name = 'web'", (vsock,))
    db.commit()
    db.close()
    try:
        yield proj
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cp(proj, *args):
    return subprocess.run([MSB, "cp", *map(str, args)], cwd=proj, capture_output=True,
                          timeout=120 * SCALE)


def snapshot(d):
    """{relative path: (kind, mode, content or link)} of a tree."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = ("link", None, os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode & 0o7777, None)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode & 0o7777, f.read())
    return out


def make_tree(d):
    os.makedirs(d / "sub" / "empty")
    (d / "bin.dat").write_bytes(os.urandom(300000) + bytes(range(256)))
    (d / "sub" / "script.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(d / "sub" / "script.sh", 0o750)
    os.chmod(d / "sub", 0o711)
    (d / "sub" / "empty.txt").write_bytes(b"")
    os.symlink("../bin.dat", d / "sub" / "link")
    os.utime(d / "bin.dat", (1500000000, 1500000000))


def test_cp_host_to_sandbox_and_back(sandbox, tmp_path):
    guest = tmp_path / "guest"  # what the sandbox's / would hold: host mode
    guest.mkdir()
    src = tmp_path / "src"
    make_tree(src)
    # A directory into an existing directory: it goes inside.
    r = cp(sandbox, src, f"web:{guest}")
    assert r.returncode == 0, r.stderr
    assert snapshot(guest / "src") == snapshot(src)
    assert os.stat(guest / "src" / "bin.dat").st_mtime == 1500000000
    # Again: existing files and symlinks are replaced.
    r = cp(sandbox, src, f"web:{guest}")
    assert r.returncode == 0, r.stderr
    assert snapshot(guest / "src") == snapshot(src)
    # A file to a new name; then over it.
    r = cp(sandbox, src / "bin.dat", f"web:{guest}/copy.dat")
    assert r.returncode == 0, r.stderr
    assert (guest / "copy.dat").read_bytes() == (src / "bin.dat").read_bytes()
    # Contents only ("dir/."), into a directory that does not exist yet.
    r = cp(sandbox, f"{src}/.", f"web:{guest}/flat")
    assert r.returncode == 0, r.stderr
    assert snapshot(guest / "flat") == snapshot(src)

    # Back out, with symlinks and mtimes.
    os.utime(guest / "src" / "bin.dat", (1600000000, 1600000000))
    back = tmp_path / "back"
    back.mkdir()
    r = cp(sandbox, f"web:{guest}/src", back)
    assert r.returncode == 0, r.stderr
    assert snapshot(back / "src") == snapshot(guest / "src")
    assert os.stat(back / "src" / "bin.dat").st_mtime == 1600000000
    r = cp(sandbox, f"web:{guest}/copy.dat", back / "one.dat")
    assert r.returncode == 0 and (back / "one.dat").read_bytes() == (src / "bin.dat").read_bytes()
    assert [n for n in os.listdir(back) if n.startswith(".msb-cp-")] == []


def test_cp_errors_are_clear(sandbox, tmp_path):
    r = cp(sandbox, f"web:{tmp_path}/missing", tmp_path)
    assert r.returncode == 3 and b"No such file" in r.stderr, r.stderr
    r = cp(sandbox, tmp_path / "missing", f"web:{tmp_path}")
    assert r.returncode == 3, r.stderr
    r = cp(sandbox, f"idle:/etc/hostname", tmp_path)
    assert r.returncode == 4 and b"not running" in r.stderr, r.stderr
    r = cp(sandbox, f"nosuch:/etc/hostname", tmp_path)
    assert r.returncode == 3 and b"nosuch" in r.stderr, r.stderr
    r = cp(sandbox, tmp_path, tmp_path / "x")
    assert r.returncode == 2 and b"NAME:PATH" in r.stderr, r.stderr
    r = cp(sandbox, "web:/a", "web:/b")
    assert r.returncode == 2, r.stderr
    r = cp(sandbox, f"web:{tmp_path}/a/b", f"{tmp_path}/nodir/")
    assert r.returncode != 0


# ---- one real sandbox (boots a VM: run it under flock /tmp/msb-vm.lock) ----------------------
def test_cp_and_metrics_in_a_real_sandbox(tmp_path):
    """msb up a busybox sandbox, msb cp a binary file and a directory in and
    out of it, and see a busy loop in its metrics (through msb-agent on the
    sandbox's vsock socket)."""
    import tempfile
    from conftest import KERNEL_DIR, new_home
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("LOUD SKIP: /dev/kvm is absent or not usable here: no sandbox can boot")
    if not (KERNEL_DIR / "vmlinux").exists():
        pytest.fail("build/kernel/vmlinux is missing: run kernel/build")
    boot = float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "2400")) * SCALE
    home = new_home(os.environ.get("MSB_TEST_HOME", tmp_path / "home"))
    env = dict(os.environ, MICROSANDBOX_HOME=str(home),
               TMPDIR=tempfile.mkdtemp(prefix="msbf-", dir="/tmp"),
               MSB_BOOT_TIMEOUT=str(int(boot)), MSB_RW_DISK_MIB="256")
    proj = tmp_path / "p"
    proj.mkdir()
    subprocess.run([MSB, "init"], cwd=proj, env=env, check=True, capture_output=True)
    (proj / "Sandboxfile").write_text("sandboxes:\n  box:\n    image: microsandbox/busybox\n"
                                      "    memory: 256\n    scripts:\n      start: sleep 86400\n")

    def run(*args, timeout=600):
        return subprocess.run([MSB, *map(str, args)], cwd=proj, env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout * SCALE)

    t0 = time.time()
    r = run("up", "box", timeout=boot + 300)
    assert r.returncode == 0, r.stderr[-3000:]
    up = time.time() - t0
    try:
        # 1 MiB and a bit: four times the agent's initial window each way, so the
        # transfer goes on only with WINDOW credit (3 MiB took ~30 s in on PVM).
        data = os.urandom(1 << 20) + bytes(range(256))
        (tmp_path / "blob").write_bytes(data)
        (tmp_path / "d" / "e").mkdir(parents=True)
        (tmp_path / "d" / "e" / "f.txt").write_bytes(b"nested\n")
        t0 = time.time()
        r = run("cp", tmp_path / "blob", "box:/root/blob")
        assert r.returncode == 0, r.stderr
        t_in = time.time() - t0
        assert run("cp", tmp_path / "d", "box:/tmp").returncode == 0
        back = tmp_path / "back"
        back.mkdir()
        t0 = time.time()
        r = run("cp", "box:/root/blob", back)
        assert r.returncode == 0, r.stderr
        t_out = time.time() - t0
        assert sha((back / "blob").read_bytes()) == sha(data)
        assert run("cp", "box:/tmp/d", back).returncode == 0
        assert (back / "d" / "e" / "f.txt").read_bytes() == b"nested\n"
        r = run("cp", "box:/nonexistent", back)
        assert r.returncode == 3 and b"No such file" in r.stderr, r.stderr

        # Metrics: idle, then with a busy loop (1 vCPU).
        import json
        import sqlite3
        db = sqlite3.connect(proj / ".menv" / "sandbox.db")
        vmm = db.execute("SELECT microvm_pid FROM sandboxes WHERE name='box'").fetchone()[0]
        db.close()
        with open(f"/proc/{vmm}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        vsock = argv[argv.index(b"--vsock") + 1].decode()
        agent_bin = os.path.join(BIN, "msb-agent")
        r = subprocess.run([agent_bin, "--vsock", vsock, "metrics", "--interval", "3000"],
                           capture_output=True, timeout=600 * SCALE)
        idle = json.loads(r.stdout)
        busy = subprocess.Popen([agent_bin, "--vsock", vsock, "exec", "--no-stdin", "--timeout",
                                 "600", "--", "sh", "-c", "while :; do :; done"])
        try:
            time.sleep(5)
            r = subprocess.run([agent_bin, "--vsock", vsock, "metrics", "--interval", "3000"],
                               capture_output=True, timeout=600 * SCALE)
            loaded = json.loads(r.stdout)
        finally:
            busy.kill()
            busy.wait()
        assert idle["ncpus"] == 1 and 200 << 20 < idle["memory_total"] <= 256 << 20
        assert loaded["cpu_percent"] >= 80, (idle, loaded)
        assert idle["cpu_percent"] < loaded["cpu_percent"]
        assert 0 < idle["disk_used"] < idle["disk_total"]
        print(f"up {up:.0f} s; 1 MiB in {t_in:.1f} s, out {t_out:.1f} s; cpu idle "
              f"{idle['cpu_percent']}%, busy {loaded['cpu_percent']}%; {idle}")
    finally:
        r = run("down", "box", timeout=900)
        assert r.returncode == 0, r.stderr


class HostileGuest:
    """A fake agent on a Unix socket (msb-vmm's CONNECT handshake, HELLO) that
    answers FILE_STAT, FILE_LIST and FILE_READ from canned tables."""

    def __init__(self, path, listings, files):
        import socket
        import threading
        self.listings, self.files = listings, files
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(8)
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(s,), daemon=True).start()

    @staticmethod
    def entry(name, type_, link=None):
        p = field(T_ENT_NAME, name) + u32(T_ENT_TYPE, type_) + field(T_ENT_SIZE, b"\0" * 8)
        p += u32(T_ENT_MODE, 0o755) + field(T_ENT_MTIME, b"\0" * 8)
        return p + (field(T_ENT_LINK, link) if link else b"")

    def conn(self, s):
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv(1)
        s.sendall(b"OK 1\n")
        c = Conn(s)
        c.recv()
        c.send(frame(0x01, payload=u32(1, 1) + field(2, "hostile") + field(3, "h")))
        try:
            while True:
                t, id_, stream, p = c.recv(30)
                path = parse_fields(p).get(T_PATH, [b""])[0].decode() if p else ""
                if t == FILE_STAT:
                    c.send(frame(FILE_INFO, id_, payload=self.entry("d", 2)))
                elif t == FILE_LIST:
                    body = b"".join(field(T_ENTRY, e) for e in self.listings.get(path, []))
                    c.send(frame(FILE_ENTRIES, id_, payload=body) + frame(OK, id_))
                elif t == FILE_READ:
                    c.send(frame(FILE_INFO, id_, 1, self.entry("f", 1)) +
                           frame(DATA, id_, 1, self.files.get(path, b"pwned")) +
                           frame(EOF, id_, 1))
        except (EOFError, OSError):
            s.close()

    def close(self):
        self.srv.close()


@pytest.mark.parametrize("case", ["dotdot", "slash", "symlink_then_dir"])
def test_cp_from_a_hostile_guest_stays_in_its_destination(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    e = HostileGuest.entry
    listings = {
        "dotdot": {"/d": [e("../evil", 1)]},
        "slash": {"/d": [e("a/evil", 1)]},
        "symlink_then_dir": {"/d": [e("x", 3, str(outside)), e("x", 2)],
                             "/d/x": [e("evil", 1)]},
    }[case]
    g = HostileGuest(str(tmp_path / "fake.sock"), listings, {})
    gen = running_sandbox(tmp_path, str(tmp_path / "fake.sock"))
    proj = next(gen)
    try:
        dest = tmp_path / "dest"
        dest.mkdir()
        r = cp(proj, "web:/d", dest)
        assert r.returncode in (4, 8), (r.returncode, r.stderr)
        assert b"component" in r.stderr or b"not a directory" in r.stderr, r.stderr
        found = [os.path.join(root, n) for root, _, files in os.walk(tmp_path) for n in files
                 if n == "evil"]
        assert found == [] and os.listdir(outside) == []
    finally:
        g.close()
        gen.close()


def test_cp_uses_the_recorded_agent_socket(agent, tmp_path):
    (tmp_path / "f").write_bytes(b"recorded")
    gen = running_sandbox(tmp_path, agent.path, recorded=True)
    proj = next(gen)
    try:
        r = cp(proj, f"web:{tmp_path}/f", tmp_path / "g")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "g").read_bytes() == b"recorded"
    finally:
        gen.close()


def test_transfers_are_bounded(agent, tmp_path):
    c = Conn.open(agent.path)
    for i in range(1, 66):
        start_upload(c, i, str(tmp_path / f"u{i}"))
    t, i, s, p = c.recv()
    assert (t, i) == (ERROR, 65)
    assert b"too many file transfers" in parse_fields(p)[T_ERR_MSG][0]
    assert len(leftovers(tmp_path)) == 64
    c.s.close()
    deadline = time.time() + 5
    while leftovers(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    assert leftovers(tmp_path) == []
