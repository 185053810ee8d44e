"""Root filesystem images, end to end: tar layers written here by Python's tarfile (an
independent tar writer), turned into an image by msb-rootfs (the same rootfs_build() the store
calls), then mounted read-only through a loop device by the host kernel and compared file by
file: type, mode (setuid/sticky), uid/gid, mtime, size, content, symlink target, hard links,
device numbers and xattrs.  Every test runs for both image writers (ext4, the default, and the
experimental EROFS one).  Mounting needs root (we are root on CI); without it those tests skip
and e2fsck / fsck.erofs still check the image."""

import hashlib
import io
import json
import os
import random
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import BIN, scaled

TOOL = BIN / "msb-rootfs"
E2FSCK = shutil.which("e2fsck") or "/sbin/e2fsck"


def run_tool(*args, check=True):
    p = subprocess.run([str(TOOL), *map(str, args)], capture_output=True, text=True,
                       timeout=scaled(300))
    if check and p.returncode != 0:
        raise AssertionError(f"msb-rootfs {args} failed ({p.returncode}): {p.stderr}")
    return p


FORMATS = ("ext4", "erofs")


@pytest.fixture(params=FORMATS, autouse=True)
def fmt(request, monkeypatch):
    """Every test runs once per image writer (MSB_ROOTFS_FORMAT selects it)."""
    monkeypatch.setenv("MSB_ROOTFS_FORMAT", request.param)
    return request.param


def fsck(img):
    if os.environ.get("MSB_ROOTFS_FORMAT") == "erofs":
        cmd = [shutil.which("fsck.erofs") or "/usr/bin/fsck.erofs", str(img)]
    else:
        cmd = [E2FSCK, "-fn", str(img)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


class Layer:
    """A tar layer written with tarfile (PAX, so xattrs and big ids fit)."""

    def __init__(self, path, compression=""):
        self.path = Path(path)
        self.tf = tarfile.open(self.path, "w:" + compression, format=tarfile.PAX_FORMAT)

    def add(self, name, kind="f", data=b"", mode=0o644, uid=0, gid=0, mtime=1700000000,
            link="", dev=(0, 0), xattrs=None):
        ti = tarfile.TarInfo(name)
        ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, mtime
        ti.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE,
                   "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE,
                   "p": tarfile.FIFOTYPE}[kind]
        ti.linkname = link
        ti.devmajor, ti.devminor = dev
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
        if kind == "f":
            ti.size = len(data)
            self.tf.addfile(ti, io.BytesIO(data))
        else:
            self.tf.addfile(ti)

    def close(self):
        self.tf.close()
        return self.path


@pytest.fixture
def work(tmp_path):
    return tmp_path


@pytest.fixture
def mounted(tmp_path):
    """mount(img) -> the mount point; unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a loop device needs root")
    points = []

    def mount(img):
        mnt = tmp_path / f"mnt{len(points)}"
        mnt.mkdir()
        fs = os.environ.get("MSB_ROOTFS_FORMAT", "ext4")
        p = subprocess.run(["mount", "-t", fs, "-o", "loop,ro", str(img), str(mnt)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"cannot loop-mount here: {p.stderr.strip()}")
        points.append(mnt)
        return mnt

    yield mount
    for mnt in points:
        subprocess.run(["umount", str(mnt)], check=False)


def test_tool_reports_format(fmt):
    assert run_tool("format").stdout.strip() == fmt


def test_layers_mounted_by_the_kernel(work, mounted):
    l1 = Layer(work / "l1.tar.gz", "gz")
    l1.add("etc", "d", mode=0o755)
    l1.add("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n")
    l1.add("etc/gone", data=b"x")
    l1.add("opt/old/file", data=b"old")
    l1.add("usr/bin/su", data=b"\x7fELF", mode=0o4755)
    l1.add("usr/bin/wall", data=b"\x7fELF", mode=0o2755, gid=5)
    l1.add("tmp", "d", mode=0o1777)
    l1.add("home/user/notes", data=b"n" * 10000, mode=0o600, uid=100000, gid=100001,
           mtime=1234567890)
    l1.add("home/user/hard", "h", link="home/user/notes")
    l1.add("bin", "l", link="usr/bin")
    l1.add("dev/null", "c", mode=0o666, dev=(1, 3))
    l1.add("dev/vda", "b", mode=0o660, dev=(254, 0), gid=6)
    l1.add("run/pipe", "p", mode=0o644)
    l1.add("usr/bin/ping", data=b"P", mode=0o755,
           xattrs={"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12,
                   "user.origin": "layer1"})
    l1 = l1.close()
    l2 = Layer(work / "l2.tar")
    l2.add("etc/.wh.gone")
    l2.add("opt/.wh..wh..opq")
    l2.add("opt/new", data=b"new")
    l2.add("etc/passwd", data=b"root:x:0:0::/root:/bin/bash\n")
    l2 = l2.close()
    img = work / "rootfs.img"
    run_tool("layers", img, f"{l1}:application/vnd.oci.image.layer.v1.tar+gzip", l2)
    fsck(img)
    m = mounted(img)

    assert not (m / "lost+found").exists()
    assert not (m / "etc/gone").exists() and not (m / "etc/.wh.gone").exists()
    assert sorted(os.listdir(m / "opt")) == ["new"]
    assert (m / "etc/passwd").read_bytes().endswith(b"/bin/bash\n")
    st = os.lstat(m / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 0
    st = os.lstat(m / "usr/bin/wall")
    assert stat.S_IMODE(st.st_mode) == 0o2755 and st.st_gid == 5
    assert stat.S_IMODE(os.lstat(m / "tmp").st_mode) == 0o1777
    st = os.lstat(m / "home/user/notes")
    assert (st.st_uid, st.st_gid, st.st_size, st.st_mtime, st.st_nlink) == \
        (100000, 100001, 10000, 1234567890, 2)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert os.lstat(m / "home/user/hard").st_ino == st.st_ino
    assert os.readlink(m / "bin") == "usr/bin"
    st = os.lstat(m / "dev/null")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)
    st = os.lstat(m / "dev/vda")
    assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (254, 0)
    assert stat.S_ISFIFO(os.lstat(m / "run/pipe").st_mode)
    assert os.getxattr(m / "usr/bin/ping", "user.origin") == b"layer1"
    cap = os.getxattr(m / "usr/bin/ping", "security.capability")
    assert cap[:4] == b"\x01\x00\x00\x02"


def random_tree(root, seed=7, n=1500):
    """A tree with many files of many sizes, odd names, links and deep directories."""
    rnd = random.Random(seed)
    root.mkdir()
    dirs = [root]
    for i in range(n):
        d = rnd.choice(dirs)
        kind = rnd.random()
        name = f"n{i}" + rnd.choice(["", " sp", "-\u00e9", ".x" * 20, "\t"])
        p = d / name
        if kind < 0.15 and len(p.parts) < 40:
            p.mkdir(mode=rnd.choice([0o755, 0o700, 0o1777]))
            dirs.append(p)
        elif kind < 0.25:
            p.symlink_to(rnd.choice(["../x", "/etc/passwd", "a" * 100, "."]))
        elif kind < 0.3 and i > 10:
            files = [f for f in d.iterdir() if f.is_file() and not f.is_symlink()]
            if files:
                os.link(files[0], p)
        else:
            size = rnd.choice([0, 1, 60, 4095, 4096, 4097, 65536, 300000])
            p.write_bytes(rnd.randbytes(size))
            os.chmod(p, rnd.choice([0o644, 0o755, 0o4755, 0o600, 0o444]))
        if not os.path.lexists(p):
            continue
        if os.geteuid() == 0 and not p.is_symlink():
            os.chown(p, rnd.randrange(0, 70000), rnd.randrange(0, 70000))
            if p.is_file() and rnd.random() < 0.3:
                os.chmod(p, 0o6755)  # chown dropped setuid; put it back on some
    # Whole-second times: tarfile writes PAX times as Python floats, which cannot carry
    # every nanosecond; the ext4 side keeps nanoseconds (checked by the unit tests).
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            t = rnd.randrange(0, 2**31)
            os.utime(Path(dirpath) / name, (t, t), follow_symlinks=False)
    return root


def listing(root):
    """Everything that must survive, per relative path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_mtime_ns, st.st_nlink if not stat.S_ISDIR(st.st_mode) else None)
            if stat.S_ISREG(st.st_mode):
                entry += (st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(p),)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                entry += (st.st_rdev,)
            if not stat.S_ISLNK(st.st_mode):
                entry += (tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                       for k in os.listxattr(p, follow_symlinks=False))),)
            out[rel] = entry
    return out


def test_tree_survives_tar_and_directory_paths(work, mounted):
    src = random_tree(work / "src")
    (work / "src").chmod(0o755)
    want = listing(src)
    layer = work / "layer.tar.zst"
    tarp = work / "layer.tar"
    with tarfile.open(tarp, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=".")
    subprocess.run(["zstd", "-q", str(tarp), "-o", str(layer)], check=True)

    img1, img2 = work / "from-layer.img", work / "from-dir.img"
    run_tool("layers", img1, layer)
    run_tool("dir", img2, src)
    fsck(img1)
    fsck(img2)
    for img in (img1, img2):
        got = listing(mounted(img))
        missing = set(want) - set(got)
        extra = set(got) - set(want)
        assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
        bad = [k for k in want if want[k] != got[k]]
        assert not bad, [(k, want[k], got[k]) for k in bad[:3]]


def test_hostile_layer_exit_status_and_no_output(work):
    layer = Layer(work / "evil.tar")
    layer.add("../../../../tmp/escaped", data=b"x")
    layer.close()
    img = work / "out.img"
    p = run_tool("layers", img, work / "evil.tar", check=False)
    assert p.returncode == 8, p.stderr  # kind corrupt
    assert "leaves the root" in p.stderr
    assert sorted(os.listdir(work)) == ["evil.tar"]


def test_symlink_escape_lands_inside(work, mounted):
    layer = Layer(work / "evil.tar")
    layer.add("esc", "l", link="/../../../../..")
    layer.add("esc" + str(work) + "/planted", data=b"inside")
    layer.close()
    img = work / "out.img"
    run_tool("layers", img, work / "evil.tar")
    assert not (work / "planted").exists()
    m = mounted(img)
    assert (m / str(work).lstrip("/") / "planted").read_bytes() == b"inside"


# ---- against umoci, an independent implementation of the same layer rules -------------------

def need_umoci():
    if os.geteuid() != 0:
        pytest.skip("umoci unpack keeps owners only as root")
    if not shutil.which("umoci"):
        pytest.skip("umoci is not installed (scripts/deps.d)")


def umoci(*args):
    p = subprocess.run(["umoci", *map(str, args)], capture_output=True, text=True,
                       timeout=scaled(600))
    assert p.returncode == 0, f"umoci {args}: {p.stderr}"


def layout_layers(layout, tag="latest"):
    """The layer blobs of layout:tag, in manifest order, as (path, media type)."""
    idx = json.loads((Path(layout) / "index.json").read_text())
    desc = next(m for m in idx["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blob = lambda d: Path(layout) / "blobs" / d.split(":")[0] / d.split(":")[1]
    man = json.loads(blob(desc["digest"]).read_text())
    return [(blob(l["digest"]), l["mediaType"]) for l in man["layers"]]


def compare_with_umoci(work, mounted, layout, tag):
    bundle = work / f"umoci-{tag}"
    umoci("unpack", "--image", f"{layout}:{tag}", bundle)
    img = work / f"{tag}.img"
    run_tool("layers", img, *[f"{p}:{mt}" for p, mt in layout_layers(layout, tag)])
    fsck(img)
    want, got = listing(bundle / "rootfs"), listing(mounted(img))
    assert sorted(set(want) ^ set(got)) == []
    bad = [(k, want[k], got[k]) for k in want if want[k] != got[k]]
    assert not bad, bad[:3]
    return len(want)


def test_umoci_whiteouts_and_opaque_dirs(work, mounted):
    """Three layers written by umoci repack from real changes to a tree (deletions become
    whiteouts, a replaced directory an opaque one); our image must equal umoci's unpack."""
    need_umoci()
    layout = work / "oci"
    umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:base")
    b = work / "b1"
    umoci("unpack", "--image", f"{layout}:base", b)
    r = b / "rootfs"
    for d in ("a/sub", "gone/deep", "replaced", "opq/inner", "keep"):
        (r / d).mkdir(parents=True, exist_ok=True)
    for f in ("a/x", "a/sub/x", "a/sub/y", "gone/deep/f", "replaced/f", "opq/o1",
              "opq/inner/o2", "keep/k"):
        (r / f).write_bytes(f.encode() * 100)
    os.chmod(r / "keep/k", 0o4750)
    os.chown(r / "a/x", 1000, 2000)
    os.link(r / "a/x", r / "a/x-link")
    os.symlink("../keep/k", r / "a/to-k")
    os.mkfifo(r / "a/fifo")
    os.mknod(r / "a/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.setxattr(r / "keep/k", "user.mark", b"v1")
    umoci("repack", "--image", f"{layout}:v1", b)

    b2 = work / "b2"
    umoci("unpack", "--image", f"{layout}:v1", b2)
    r = b2 / "rootfs"
    os.unlink(r / "a/sub/x")
    shutil.rmtree(r / "gone")
    shutil.rmtree(r / "replaced")
    (r / "replaced").write_bytes(b"now a file")
    shutil.rmtree(r / "opq")
    (r / "opq").mkdir()
    (r / "opq/fresh").write_bytes(b"fresh")
    os.chown(r / "keep/k", 7, 8)
    os.chmod(r / "keep/k", 0o2711)
    os.setxattr(r / "keep/k", "user.mark", b"v2")
    umoci("repack", "--image", f"{layout}:v2", b2)

    b3 = work / "b3"
    umoci("unpack", "--image", f"{layout}:v2", b3)
    r = b3 / "rootfs"
    os.unlink(r / "a/x-link")
    (r / "a/new").write_bytes(b"new")
    umoci("repack", "--image", f"{layout}:v3", b3)

    assert len(layout_layers(layout, "v3")) == 3
    n = compare_with_umoci(work, mounted, layout, "v3")
    assert n >= 10


@pytest.mark.parametrize("name", ["busybox", "python"])
def test_project_images_match_umoci(work, mounted, name):
    """The project's own test images (scripts/test-images, cached) against umoci unpack."""
    need_umoci()
    p = subprocess.run([str(Path(__file__).resolve().parents[2] / "scripts/test-images"), name],
                       capture_output=True, text=True, timeout=scaled(1200))
    if p.returncode != 0:
        pytest.skip(f"scripts/test-images {name} failed: {p.stderr[-500:]}")
    layout = Path(p.stdout.split()[-1])
    n = compare_with_umoci(work, mounted, layout, "latest")
    assert n > (200 if name == "busybox" else 5000)
