"""Shared fixtures for the integration tests.

- `BUILD`, `BIN`, `TOP`, `scaled(seconds)`: where the binaries are and how long
  to wait (every timeout multiplies by MSB_TEST_TIMEOUT_SCALE).
- A watchdog: a test that runs longer than MSB_TEST_MAX_SECONDS (default 1800, scaled)
  fails with a message saying so (SIGALRM), and the suite goes on.
- `need_kvm()`: skips loudly when /dev/kvm is absent (and only then).
- `tiny_elf(code)`: an ELF "kernel" made of a few bytes of 64-bit code, which
  msb-vmm boots like a vmlinux (long mode, at 16 MiB): guests that power off,
  crash or spin in milliseconds.
- `Vmm`: one msb-vmm process with its serial/console output in files, helpers
  to wait for a line, signal it and read its exit status.
- `guest_kernel`, `guest_initrd`, `base_cmdline`: the project's kernel
  (build/kernel/vmlinux, skip if not built), msb-init's initramfs
  (build/release/initramfs.cpio or None) and build/kernel/cmdline.txt.
- `hold_vm_lock()`: a context manager holding /tmp/msb-vm.lock (flock(1)'s lock,
  so that VMs of other runs on a shared machine wait); a no-op when a process
  this one descends from holds it (`flock /tmp/msb-vm.lock pytest ...` or
  `... make integration`) or MSB_VM_LOCK_HELD=1 says so: a second flock of
  the same file from the test would wait forever.  Shared in pytest-xdist workers.
- Under pytest-xdist, the slowest files are collected first (`SLOW_FILES_FIRST`).
- For VM tests (docs/development.md, "The suite's length"): `need_vm()`,
  `VM_BOOT_TIMEOUT`, `images_home` (session scope: a MICROSANDBOX_HOME with
  microsandbox/busybox and microsandbox/python), `Sandbox(home, image, *exe_args)`
  (one `msb exe` sandbox kept running, restored from its shape's base snapshot,
  with `.sh(script)` and `.agent(...)` over its vsock; share one per module) and
  `find_vsock(msb_proc, timeout)`.  `image_layout(name)` / `busybox_layout`: a test
  image's OCI layout, built once per session; `new_home(path, *(layout, name))`: a
  MICROSANDBOX_HOME of a module's own with images imported (default: busybox).
- `MSB_BASE_SNAPSHOTS` is set (unless given) to ~/.cache/microsandbox/base-snapshots, so
  every msb started by a test restores base snapshots from one shared cache.
- `linux_vm` (session scope): ONE Linux boot shared by every test that needs
  a real guest (a boot takes several minutes on PVM): 2 vCPUs, 128 MiB, serial
  console to a file, a vsock device (`linux_vm.vsock_path`, for msb-agent),
  the initramfs when it exists; `linux_vm.wait_ready(timeout)` returns
  msb-init's READY frame.  test_vmm.py's last test powers it off, and under
  pytest-xdist test_vmm.py is among the first files of its worker (each worker
  is a session of its own): keep `linux_vm` to test_vmm.py.
"""

import contextlib
import faulthandler
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MSB_BUILD_DIR", TOP / "build" / "release")).resolve()
BIN = BUILD / "bin"
MSB_VMM = BIN / "msb-vmm"
KERNEL_DIR = TOP / "build" / "kernel"
SCALE = float(os.environ.get("MSB_TEST_TIMEOUT_SCALE", "1"))

# Sandboxes started through msb restore a base snapshot (docs/snapshot.md) instead of
# booting: one cache of base snapshots for every module and run (each module has its own
# MICROSANDBOX_HOME). Safe to share: a base's key changes with the kernel, initramfs,
# msb-vmm and VM shape, and msb builds each one once under a lock. MSB_NO_SNAPSHOT=1 makes
# the tests boot cold instead.
os.environ.setdefault("MSB_BASE_SNAPSHOTS",
                      str(Path.home() / ".cache" / "microsandbox" / "base-snapshots"))

# No test can hang the suite: one that runs longer than this (setup and teardown included)
# is stopped with a failure that says so, and the run goes on.  Tests have their own,
# shorter deadlines; this is the last resort.
TEST_MAX_SECONDS = SCALE * float(os.environ.get("MSB_TEST_MAX_SECONDS", "1800"))
TEST_TIMEOUT_TEXT = f"{TEST_MAX_SECONDS:.0f} s (MSB_TEST_MAX_SECONDS x MSB_TEST_TIMEOUT_SCALE)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    def expired(signum, frame):
        pytest.fail(f"{item.nodeid} ran longer than {TEST_TIMEOUT_TEXT}: stopped so that the "
                    f"suite goes on (a test waits with a deadline of its own; raise "
                    f"MSB_TEST_MAX_SECONDS if this machine is that slow)")

    if threading.current_thread() is not threading.main_thread():
        # A pytest-xdist worker runs its tests outside the main thread, where no signal
        # handler can be set: past the deadline the worker prints every thread's stack
        # and exits, xdist reports the test as crashed and starts a new worker.
        faulthandler.dump_traceback_later(TEST_MAX_SECONDS, exit=True)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
        return
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, TEST_MAX_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)

# Under pytest-xdist (MSB_TEST_JOBS=N, --dist loadfile) the workers are handed whole files
# in collection order, each with its next file already queued: the longest files go first
# so that no long one starts last while the other worker has nothing left (the files over
# ~40 s in the clean-clone run of 2026-11-30 03:04, longest first; the others follow in
# name order).  A run without workers keeps name order.
SLOW_FILES_FIRST = (
    "test_server_vm.py", "test_sandbox_limits.py", "test_agent_vm.py",
    "test_sandbox_snapshot.py", "test_sdk_javascript.py", "test_sdk_python.py",
    "test_vmm_snapshot.py", "test_project_vm.py", "test_agent_files.py", "test_vmm.py",
    "test_sdk_c.py", "test_vmm_pvm.py", "test_sandbox_volumes.py",
)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).name, len(rank)))  # stable


# msb-vmm's exit statuses (msb-vmm --help, docs/vmm.md)
EXIT_OK, EXIT_HOST, EXIT_USAGE, EXIT_FORCED, EXIT_GUEST = 0, 1, 2, 5, 7


VM_LOCK = "/tmp/msb-vm.lock"


def vm_lock_held_by_an_ancestor():
    """True when a process this one descends from (e.g. `flock /tmp/msb-vm.lock make
    integration`) holds VM_LOCK: /proc/locks names the holder's pid and the file's inode."""
    try:
        st = os.stat(VM_LOCK)
        with open("/proc/locks") as f:
            rows = [line.split() for line in f]
    except OSError:
        return False
    holders = set()
    for r in rows:  # "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"; waiters have "->"
        if len(r) >= 6 and r[1] == "FLOCK" and "->" not in r:
            dev = r[5].split(":")
            if len(dev) == 3 and int(dev[2]) == st.st_ino and \
                    os.makedev(int(dev[0], 16), int(dev[1], 16)) == st.st_dev:
                holders.add(int(r[4]))
    pid = os.getpid()
    while pid > 1:
        if pid in holders:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


@contextlib.contextmanager
def hold_vm_lock():
    """Hold VM_LOCK for the block (see the module docstring).  In a pytest-xdist worker
    (MSB_TEST_JOBS=N) the lock is taken shared: the run's own workers do not wait for
    each other (their VMs run side by side anyway), runs that take it exclusively
    (flock(1), a run without workers) do."""
    if os.environ.get("MSB_VM_LOCK_HELD") == "1" or vm_lock_held_by_an_ancestor():
        yield
        return
    with open(VM_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if os.environ.get("PYTEST_XDIST_WORKER") else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def scaled(seconds):
    return seconds * SCALE


def need_kvm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is absent or not usable here: cannot run guests")


def tiny_elf(code, paddr=0x1000000):
    """An x86-64 ELF executable with one PT_LOAD segment holding `code` at
    physical `paddr` (virtual in the kernel's high half, like vmlinux)."""
    offset = 0x1000
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, paddr, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 7, offset, 0xFFFFFFFF80000000 + paddr, paddr,
                       len(code), len(code), 0x1000)
    head = ehdr + phdr
    return head + bytes(offset - len(head)) + code


# A few guests, as 64-bit machine code.
OUT_DX_AL = b"\xee"
JMP_SELF = b"\xeb\xfe"


def mov_dx(port):
    return b"\x66\xba" + struct.pack("<H", port)


def mov_al(v):
    return bytes([0xB0, v])


def guest_print_and_power_off(text, status=0):
    code = mov_dx(0x3F8)
    for ch in text.encode():
        code += mov_al(ch) + OUT_DX_AL
    return code + mov_dx(0x510) + mov_al(status) + OUT_DX_AL + JMP_SELF


GUEST_SPIN = JMP_SELF
GUEST_TRIPLE_FAULT = b"\x0f\x0b"  # ud2 with an empty IDT
GUEST_I8042_RESET = mov_al(0xFE) + b"\xe6\x64" + JMP_SELF


class Vmm:
    """One msb-vmm process.  Serial output goes to `serial_path` when
    `serial` is true, virtio console output to `console_path` with
    `console`; stderr to `stderr_path`."""

    def __init__(self, workdir, kernel, args=(), serial=True, console=False, vsock=False,
                 cpus=1, memory=256, initrd=None, base_cmdline=None, cmdline=None, env=None):
        self.workdir = Path(workdir)
        self.serial_path = self.workdir / "serial.log"
        self.console_path = self.workdir / "console.log"
        self.stderr_path = self.workdir / "vmm.stderr"
        self.vsock_path = self.workdir / "vsock.sock" if vsock else None
        argv = [str(MSB_VMM), "--kernel", str(kernel), "--cpus", str(cpus),
                "--memory", str(memory)]
        if serial:
            argv += ["--serial", str(self.serial_path)]
        if console:
            argv += ["--console", str(self.console_path)]
        if vsock:
            argv += ["--vsock", str(self.vsock_path)]
        if initrd:
            argv += ["--initrd", str(initrd)]
        if base_cmdline is not None:
            argv += ["--base-cmdline", base_cmdline]
        if cmdline:
            argv += ["--cmdline", cmdline]
        argv += list(args)
        self.argv = argv
        self.ready_listener = None
        if vsock:
            # msb-init announces READY to host port 1023, i.e. <uds>_1023.
            self.ready_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.ready_listener.bind(f"{self.vsock_path}_1023")
            self.ready_listener.listen(1)
            self.ready_listener.setblocking(False)
        self.ready_frame = None
        self.started = time.monotonic()
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=env)

    @property
    def pid(self):
        return self.proc.pid

    def serial(self):
        return self.serial_path.read_text(errors="replace") if self.serial_path.exists() else ""

    def console(self):
        return self.console_path.read_text(errors="replace") if self.console_path.exists() else ""

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, pattern, timeout, source="serial"):
        """Wait until `pattern` (a regex) appears in the serial (or console)
        output; returns the match.  Fails with the output's tail when the
        time runs out or msb-vmm exits first."""
        read = self.serial if source == "serial" else self.console
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(read())
            if m:
                return m
            if self.proc.poll() is not None:
                m = rx.search(read())
                if m:
                    return m
                pytest.fail(f"msb-vmm exited ({self.proc.returncode}) before /{pattern}/ "
                            f"appeared\n--- {source} tail:\n{read()[-3000:]}\n"
                            f"--- stderr:\n{self.stderr()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"/{pattern}/ did not appear within {timeout:.0f} s\n"
                            f"--- {source} tail:\n{read()[-3000:]}")
            time.sleep(0.2)

    def wait_ready(self, timeout):
        """Wait for msb-init's READY frame on <uds>_1023; returns its bytes
        (the agent protocol frame, docs/agent-protocol.md)."""
        if self.ready_frame is not None:
            return self.ready_frame
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c, _ = self.ready_listener.accept()
            except BlockingIOError:
                if self.proc.poll() is not None:
                    pytest.fail(f"msb-vmm exited ({self.proc.returncode}) before the guest "
                                f"was ready\n--- serial tail:\n{self.serial()[-3000:]}\n"
                                f"--- stderr:\n{self.stderr()[-3000:]}")
                time.sleep(0.2)
                continue
            with c:
                c.settimeout(scaled(30))
                data = b""
                while len(data) < 16 or len(data) < 16 + struct.unpack_from("<I", data)[0]:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            self.ready_frame = data
            return data
        pytest.fail(f"the guest was not ready within {timeout:.0f} s\n"
                    f"--- serial tail:\n{self.serial()[-3000:]}")

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"msb-vmm did not exit within {timeout:.0f} s\n"
                        f"--- stderr:\n{self.stderr()[-3000:]}")

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        self._stderr.close()
        if self.ready_listener is not None:
            self.ready_listener.close()


@pytest.fixture
def vmm_factory(tmp_path):
    """Start msb-vmm processes in this test's directory; all are killed at
    the end of the test."""
    made = []

    def make(kernel, **kw):
        d = tmp_path / f"vm{len(made)}"
        d.mkdir()
        v = Vmm(d, kernel, **kw)
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


@pytest.fixture(scope="session")
def guest_kernel():
    k = KERNEL_DIR / "vmlinux"
    if not k.exists():
        pytest.skip(f"{k} is not built (run kernel/build)")
    return k


@pytest.fixture(scope="session")
def base_cmdline():
    f = KERNEL_DIR / "cmdline.txt"
    return f.read_text().strip() if f.exists() else None


@pytest.fixture(scope="session")
def guest_initrd():
    f = BUILD / "initramfs.cpio"
    return f if f.exists() else None


def serial_cmdline(base):
    """The base command line with the console on ttyS0 and boot messages on."""
    if base is None:
        return None
    words = [w for w in base.split() if not w.startswith("console=") and w != "quiet"]
    return " ".join(["console=ttyS0"] + words)


@pytest.fixture(scope="session")
def linux_vm(guest_kernel, base_cmdline, guest_initrd):
    """One real Linux guest for the whole session (see the module docstring).
    Tests read its serial log with wait_for(); whoever needs it stopped does so
    last (test order within a module is file order)."""
    need_kvm()
    d = Path(tempfile.mkdtemp(prefix="msb-linux-vm-"))
    v = Vmm(d, guest_kernel, cpus=2, memory=128, vsock=True, initrd=guest_initrd,
            base_cmdline=serial_cmdline(base_cmdline),
            args=["--rng", "--shutdown-timeout", str(int(scaled(300)))])
    yield v
    v.close()


# ---- sandboxes for VM tests (docs/development.md "The suite's length") --------------------

# A restore takes seconds, but the first use of a VM shape in a clean run builds its base
# snapshot with a cold boot: minutes on PVM under load.
VM_BOOT_TIMEOUT = scaled(float(os.environ.get("MSB_VM_BOOT_TIMEOUT", "2400")))


def need_vm():
    """Skips loudly without /dev/kvm; fails when the guest kernel is not built."""
    need_kvm()
    if not (KERNEL_DIR / "vmlinux").exists():
        pytest.fail("build/kernel/vmlinux is missing: run kernel/build")


@pytest.fixture(scope="session")
def images_home(tmp_path_factory):
    """A MICROSANDBOX_HOME with microsandbox/busybox and microsandbox/python imported
    (scripts/test-images, cached), shared by the whole session: give your sandboxes names
    of your own."""
    home = tmp_path_factory.mktemp("images-home")
    env = dict(os.environ, MICROSANDBOX_HOME=str(home), MSB_BUILD_DIR=str(BUILD))
    r = subprocess.run([str(TOP / "scripts" / "test-images"), "--import", "busybox", "python"],
                       env=env, capture_output=True, text=True, timeout=scaled(1800))
    if r.returncode != 0:
        pytest.fail(f"scripts/test-images --import failed:\n{r.stderr[-3000:]}")
    return home


_LAYOUTS = {}


def image_layout(name):
    """The OCI layout directory of scripts/test-images' image NAME (busybox, python,
    node): built or taken from its cache once per session."""
    if name not in _LAYOUTS:
        out = subprocess.run([str(TOP / "scripts" / "test-images"), name], capture_output=True,
                             text=True, timeout=scaled(1800))
        if out.returncode != 0:
            pytest.fail(f"scripts/test-images {name} failed:\n{out.stderr[-3000:]}")
        _LAYOUTS[name] = out.stdout.split()[-1]
    return _LAYOUTS[name]


@pytest.fixture(scope="session")
def busybox_layout():
    """scripts/test-images' busybox layout (session scope): import it into a home of
    your own with `new_home(path)`."""
    return image_layout("busybox")


def new_home(path, *images):
    """A new MICROSANDBOX_HOME at `path` with `images` imported: (layout, name) pairs;
    none given: busybox as microsandbox/busybox.  Returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MICROSANDBOX_HOME=str(path), MSB_BUILD_DIR=str(BUILD))
    for layout, name in images or ((image_layout("busybox"), "microsandbox/busybox"),):
        r = subprocess.run([str(BIN / "msb"), "image", "import", str(layout), name], env=env,
                           capture_output=True, text=True, timeout=scaled(600))
        if r.returncode != 0:
            pytest.fail(f"msb image import {layout} {name} failed:\n{r.stderr[-3000:]}")
    return path


def host_agent_vmm(tmp):
    """A stand-in for msb-vmm at `tmp`/fake-vmm that runs the host build of msb-init
    (`--serve-unix` on the VM's vsock path): sandboxes whose commands run on this host,
    through the real CLI, sandbox library, agent client and agent.  Returns the
    environment that points msb at it (no /dev/kvm, no kernel needed)."""
    fake = Path(tmp) / "fake-vmm"
    fake.write_text("#!/bin/sh\n# msb-vmm's stand-in: the agent on the host\n"
                    'while [ $# -gt 0 ]; do [ "$1" = --vsock ] && v=$2; shift; done\n'
                    f'exec {BIN / "msb-init"} --serve-unix "$v"\n')
    fake.chmod(0o755)
    return dict(MSB_VMM=str(fake), MSB_KERNEL=str(fake), MSB_KVM_DEVICE="/dev/null")


def find_vsock(proc, timeout):
    """The vsock socket of the msb-vmm that runs the sandbox: a child of msb whose command
    line is not the base snapshot's VM (msb.hostname=base; built first in a fresh home,
    saved, and gone before the sandbox is restored from it) nor the builder of the image's
    warm snapshot (a restore with --net none).  Not for --scope none sandboxes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-3000:]
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if ppid != proc.pid or b"--vsock" not in args:
                continue
            if any(b"msb.hostname=base" in a for a in args):
                continue
            # the builder of an image's warm snapshot: a base restore without a network,
            # gone once the snapshot is saved (the sandboxes found here have one)
            if b"--restore" in args and b"--net" in args and \
                    args[args.index(b"--net") + 1:args.index(b"--net") + 2] == [b"none"]:
                continue
            path = args[args.index(b"--vsock") + 1].decode()
            if os.path.exists(path):
                return path
        time.sleep(0.5)
    pytest.fail("no msb-vmm with a vsock socket under msb exe")


class Sandbox:
    """`msb exe [ARGS] -e sleep IMAGE -- 100000` kept running (restored from the base
    snapshot of its shape), reached through msb-agent on its vsock.  A context manager;
    for a module, wrap it in a module-scoped fixture so that the tests share one sandbox:

        @pytest.fixture(scope="module")
        def box(images_home):
            with Sandbox(images_home, "microsandbox/busybox", "--memory", "256") as s:
                yield s
    """

    def __init__(self, home, image, *args, env=None):
        need_vm()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="msbs-", dir="/tmp"))  # short socket paths
        e = dict(os.environ, MICROSANDBOX_HOME=str(home), TMPDIR=str(self.tmpdir),
                 MSB_BOOT_TIMEOUT=str(int(VM_BOOT_TIMEOUT)), **(env or {}))
        self.proc = subprocess.Popen([str(BIN / "msb"), "exe", *args, "-e", "sleep", image,
                                      "--", "100000"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        try:
            self.vsock = find_vsock(self.proc, VM_BOOT_TIMEOUT)
            r = self.agent("wait-ready", "--timeout", str(int(VM_BOOT_TIMEOUT)),
                           timeout=VM_BOOT_TIMEOUT + 60)
            assert r.returncode == 0, r.stderr
        except BaseException:
            self.stop()
            raise

    def agent(self, *args, stdin=None, timeout=600):
        """msb-agent ARGS against this sandbox; text output."""
        return subprocess.run([str(BIN / "msb-agent"), "--vsock", self.vsock, *args],
                              input=stdin, capture_output=True, text=True, errors="replace",
                              timeout=scaled(timeout))

    def sh(self, script, timeout=600):
        """/bin/sh -c SCRIPT in the guest (one process start: ~1 s on PVM)."""
        return self.agent("exec", "--no-stdin", "--", "/bin/sh", "-c", script, timeout=timeout)

    def stop(self):
        """SIGTERM to msb exe (it stops its VM and removes its run directory)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(120))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
