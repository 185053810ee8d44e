"""msb image import: OCI layout directory, OCI archive, docker-archive, root filesystem
directory; hostile archives are refused."""

import io
import json
import os
import subprocess
import tarfile

import pytest

import registry as R
from test_oci_pull import MSB, msb, inspect

pytestmark = pytest.mark.skipif(not os.access("/usr/bin/umoci", os.X_OK),
                                reason="umoci is not installed (scripts/install-deps)")


@pytest.fixture(scope="module")
def layout():
    return R.test_image_layout("busybox")


def manifest_digest(layout):
    return json.load(open(os.path.join(layout, "index.json")))["manifests"][0]["digest"]


def test_import_oci_layout_directory(tmp_path, layout):
    r = msb(tmp_path, "image", "import", layout, "microsandbox/busybox", check=0)
    assert r.stdout.split()[:2] == ["docker.io/microsandbox/busybox:latest",
                                    manifest_digest(layout)]
    img = inspect(tmp_path, "microsandbox/busybox")
    assert img["config"]["cmd"] == ["/bin/sh"]
    assert os.path.getsize(img["rootfs_path"]) > 1_000_000


def test_import_oci_archive(tmp_path, layout):
    tar = tmp_path / "img.tar"
    subprocess.run(["tar", "-C", layout, "-cf", str(tar), "."], check=True)
    msb(tmp_path, "image", "import", str(tar), "local/bb:oci", check=0)
    assert inspect(tmp_path, "local/bb:oci")["manifest_digest"] == manifest_digest(layout)


def test_import_docker_archive(tmp_path, layout):
    tar = tmp_path / "docker.tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:latest",
                    f"docker-archive:{tar}:x/y:z"], check=True)
    msb(tmp_path, "image", "import", str(tar), "local/bb:docker", check=0)
    img = inspect(tmp_path, "local/bb:docker")
    assert img["config"]["cmd"] == ["/bin/sh"]
    assert len(img["layers"]) == 1
    assert os.path.exists(img["rootfs_path"])


def test_import_root_filesystem_directory(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "hello").write_text("hi\n")
    os.symlink("/bin/busybox", root / "bin" / "sh")
    msb(tmp_path, "image", "import", str(root), "local/dir", check=0)
    img = inspect(tmp_path, "local/dir")
    assert img["layers"] == []
    assert os.path.exists(img["rootfs_path"])
    # The same tree again: the same image, its root filesystem image is not rebuilt.
    mtime = os.stat(img["rootfs_path"]).st_mtime_ns
    msb(tmp_path, "image", "import", str(root), "local/dir2", check=0)
    again = inspect(tmp_path, "local/dir2")
    assert again["manifest_digest"] == img["manifest_digest"]
    assert os.stat(again["rootfs_path"]).st_mtime_ns == mtime
    # Any change (content, mode, a new file) makes a new image.
    for change in (lambda: (root / "etc" / "hello").write_text("bye\n"),
                   lambda: os.chmod(root / "etc" / "hello", 0o600),
                   lambda: (root / "new").mkdir()):
        change()
        msb(tmp_path, "image", "import", str(root), "local/dir", check=0)
        now = inspect(tmp_path, "local/dir")["manifest_digest"]
        assert now != img["manifest_digest"]
        img["manifest_digest"] = now


def _tar_with(tmp_path, name, data=b"x"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        ti = tarfile.TarInfo("oci-layout")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"{}"))
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    p = tmp_path / "evil.tar"
    p.write_bytes(buf.getvalue())
    return p


@pytest.mark.parametrize("name", ["../escape", "/abs/escape", "a/../../escape"])
def test_hostile_archive_paths_are_refused(tmp_path, name):
    p = _tar_with(tmp_path, name)
    r = msb(tmp_path / "home", "image", "import", str(p), "evil")
    assert r.returncode == 8, r.stderr
    assert "refusing" in r.stderr
    assert not (tmp_path / "escape").exists()
    assert not os.path.exists("/abs/escape")


def test_archive_that_is_not_an_image(tmp_path):
    p = tmp_path / "x.tar"
    subprocess.run(["tar", "-C", str(tmp_path), "-cf", str(p), "--files-from", "/dev/null"],
                   check=True)
    r = msb(tmp_path / "home", "image", "import", str(p), "x")
    assert r.returncode == 2, r.stderr
    subprocess.run(["gzip", "-k", str(p)], check=True)
    r = msb(tmp_path / "home", "image", "import", str(p) + ".gz", "x")
    assert r.returncode == 2 and "decompress it first" in r.stderr, r.stderr
    r = msb(tmp_path / "home", "image", "import", str(tmp_path / "missing"), "x")
    assert r.returncode == 3, r.stderr
