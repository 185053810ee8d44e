"""The per-image warm snapshot of `msb exe` (docs/snapshot.md, "The warm snapshot") on real
VMs, in one private MICROSANDBOX_HOME with the busybox image: the first run builds it, the
next ones restore it, copies do not share identity, randomness or files, a damaged one is
rebuilt, `msb snapshot prune` removes a stale one.  Four sandbox starts in all (the shared
base snapshot of conftest; one warm build, one rebuild).  Run it under the VM lock."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import BIN, VM_BOOT_TIMEOUT, need_vm, new_home, scaled

MSB = BIN / "msb"
IMAGE = "microsandbox/busybox"
PROBE = ("cat /etc/machine-id; hostname; head -c16 /dev/urandom | od -An -tx1 | tr -d ' '; "
         "cat /proc/sys/kernel/random/boot_id; "
         "if [ -e /tmp/left-by-run ]; then echo LEAKED; fi; echo run > /tmp/left-by-run")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    need_vm()
    return new_home(tmp_path_factory.mktemp("warm") / "home")


def msb(home, *args, env=None, timeout=None):
    tmp = tempfile.mkdtemp(prefix="msbw-", dir="/tmp")
    e = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=tmp, MSB_LOG="info",
             MSB_BOOT_TIMEOUT=str(int(VM_BOOT_TIMEOUT)))
    e.pop("MSB_NO_SNAPSHOT", None)
    e.pop("MSB_NO_WARM_SNAPSHOT", None)
    e.pop("MSB_WARM_SNAPSHOTS", None)
    e.update(env or {})
    try:
        return subprocess.run([str(MSB)] + list(args), env=e, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              timeout=timeout or VM_BOOT_TIMEOUT + scaled(600))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def probe(home, env=None, extra="", args=()):
    r = msb(home, "exe", *args, IMAGE, "-e", "sh", "--", "-c", PROBE + extra, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.split()
    assert len(lines) == (5 if extra else 4), r.stdout
    return lines, r.stderr


class Pong:
    """A TCP server on the host's 127.0.0.1 answering one line with "pong"."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(30)
                try:
                    c.recv(64)
                    c.sendall(b"pong\n")
                except OSError:
                    pass


def warm_dirs(home):
    root = Path(home) / "snapshots" / "warm"
    return sorted(p for p in root.iterdir() if re.fullmatch(r"[0-9a-f]{16}", p.name)) \
        if root.exists() else []


def test_first_run_builds_the_warm_snapshot_and_the_second_restores_it(home):
    one, err1 = probe(home)
    assert "preparing a warm snapshot of docker.io/microsandbox/busybox:latest (first run " \
           "of this image)" in err1, err1[-3000:]
    assert "warm snapshot ready" in err1
    assert "restored from the warm snapshot" in err1, err1[-3000:]
    dirs = warm_dirs(home)
    assert len(dirs) == 1
    assert {"state", "memory", "meta"} <= {p.name for p in dirs[0].iterdir()}
    meta = (dirs[0] / "meta").read_text()
    assert "image=docker.io/microsandbox/busybox:latest" in meta and "digest=sha256:" in meta

    # the network of the snapshot's eth0 works through this copy's own passt
    srv = Pong()
    two, err2 = probe(home, extra=f"; echo ping | nc -w 60 10.0.2.2 {srv.port}",
                      args=("--scope", "any"))
    srv.sock.close()
    assert two[4] == "pong", two
    two = two[:4]
    assert "preparing a warm snapshot" not in err2
    assert "restored from the warm snapshot" in err2, err2[-3000:]
    assert warm_dirs(home) == dirs
    # nothing of one copy in the other: identity, randomness, files
    mid1, host1, rnd1, boot1 = one
    mid2, host2, rnd2, boot2 = two
    assert re.fullmatch(r"[0-9a-f]{32}", mid1) and mid1 != mid2
    assert host1 == host2 == "tmp"  # the sandbox's name, set per copy (not the builder's)
    assert rnd1 != rnd2
    assert boot1 != boot2
    assert "LEAKED" not in one + two


def test_no_warm_snapshot_and_scope_none_restore_the_base(home):
    lines, err = probe(home, env={"MSB_NO_WARM_SNAPSHOT": "1"})
    assert "restored from the base snapshot" in err, err[-3000:]
    assert "warm snapshot" not in err
    # the warm snapshot's eth0 is configured: a sandbox without network does not use it
    r = msb(home, "exe", "--scope", "none", IMAGE, "-e", "sh", "--", "-c",
            "ip -4 addr show eth0 2>&1 | grep -c 'inet ' || true")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "restored from the base snapshot" in r.stderr, r.stderr[-3000:]
    assert r.stdout.strip() == "0", r.stdout


def test_a_damaged_warm_snapshot_is_rebuilt_and_the_command_runs(home):
    (d,) = warm_dirs(home)
    state = d / "state"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])  # truncated: msb-vmm refuses it (exit 3)
    r = msb(home, "exe", IMAGE, "-e", "echo", "--", "still runs")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout == "still runs\n"
    assert "refused the warm snapshot" in r.stderr and "rebuilding it" in r.stderr, \
        r.stderr[-3000:]
    assert "preparing a warm snapshot" in r.stderr
    assert "restored from the warm snapshot" in r.stderr
    assert warm_dirs(home) == [d] and len((d / "state").read_bytes()) == len(data)


def test_prune_removes_a_stale_warm_snapshot(home):
    (d,) = warm_dirs(home)
    # a copy under another key: what a re-pulled image's old snapshot looks like
    stale = d.parent / "0123456789abcdef"
    shutil.copytree(d, stale)
    leftover = d.parent / f"{d.name}.tmp-999999999"
    leftover.mkdir()
    r = msb(home, "snapshot", "prune", timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    assert "warm snapshot 0123456789abcdef" in r.stdout, r.stdout
    assert "1 warm snapshot" in r.stdout, r.stdout
    assert not stale.exists() and not leftover.exists() and d.exists()
