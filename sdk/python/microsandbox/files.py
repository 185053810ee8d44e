"""`sandbox.files`: read, write, list, upload and download files in a sandbox.

Contents travel over the server's raw file route (PUT/GET
/api/v1/sandbox/file), streamed both ways, so size is not limited by JSON.
"""

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, List, Optional, Union

from .errors import FileNotFound, GuestError

if TYPE_CHECKING:
    from .base_sandbox import BaseSandbox

_CHUNK = 256 * 1024

# Portable across coreutils and busybox: one "type|size|mode|mtime|name" line
# per entry, dot files included.  Exit 3: the path is not a directory.
_LIST_SCRIPT = (
    'cd -- "$1" 2>/dev/null || exit 3; '
    "for f in .* *; do "
    '[ "$f" = . ] || [ "$f" = .. ] && continue; '
    '[ -e "$f" ] || [ -L "$f" ] || continue; '
    'stat -c "%F|%s|%a|%Y|%n" -- "$f"; '
    "done"
)


@dataclass
class FileInfo:
    name: str
    path: str
    type: str  # "file" | "directory" | "symlink" | "other"
    size: int
    mode: int
    mtime: int


def _kind(stat_type: str) -> str:
    t = stat_type.lower()
    if "directory" in t:
        return "directory"
    if "symbolic link" in t:
        return "symlink"
    if "regular" in t:
        return "file"
    return "other"


class Files:
    def __init__(self, sandbox: "BaseSandbox") -> None:
        self._sandbox = sandbox

    async def write(self, path: str, data: Union[bytes, str], mode: Optional[int] = None) -> int:
        """Write `data` (str is UTF-8 encoded) to the absolute `path`; the file
        appears only once all of it arrived.  Returns the size written."""
        sb = self._sandbox
        sb._require_started()
        body = data.encode() if isinstance(data, str) else bytes(data)
        res = await sb._client.put_file(
            sb._name, path, body, len(body), mode, context=f"Failed to write {path}"
        )
        return int(res.get("size", len(body)))

    async def read(self, path: str) -> bytes:
        """The whole content of the absolute `path`."""
        sb = self._sandbox
        sb._require_started()
        resp = await sb._client.get_file(sb._name, path, context=f"Failed to read {path}")
        return await resp.read()

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def upload(self, local_path: Union[str, "os.PathLike[str]"], path: str, mode: Optional[int] = None) -> int:
        """Stream a local file to `path` in the sandbox (any size, never held
        whole in memory).  Returns the size."""
        sb = self._sandbox
        sb._require_started()
        size = os.path.getsize(local_path)
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777

        async def chunks() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            with open(local_path, "rb") as f:
                while True:
                    piece = await loop.run_in_executor(None, f.read, _CHUNK)
                    if not piece:
                        break
                    yield piece

        res = await sb._client.put_file(
            sb._name, path, chunks(), size, mode, context=f"Failed to upload {local_path} to {path}"
        )
        return int(res.get("size", size))

    async def download(self, path: str, local_path: Union[str, "os.PathLike[str]"]) -> int:
        """Stream `path` from the sandbox into a local file (written to a
        temporary name, renamed when complete).  Returns the size."""
        sb = self._sandbox
        sb._require_started()
        resp = await sb._client.get_file(sb._name, path, context=f"Failed to download {path}")
        tmp = f"{os.fspath(local_path)}.part"
        n = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in resp.iter_chunks(_CHUNK):
                    f.write(chunk)
                    n += len(chunk)
            os.replace(tmp, local_path)
        except BaseException:
            resp.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return n

    async def list(self, path: str = "/") -> List[FileInfo]:
        """The entries of the directory `path` (dot files included), sorted by
        name.  Runs `stat` in the sandbox: names containing newlines are not
        supported."""
        sb = self._sandbox
        r = await sb.command.run("sh", ["-c", _LIST_SCRIPT, "sh", path])
        if r.exit_code == 3:
            raise FileNotFound(f"{path} is not a directory in the sandbox", context=f"Failed to list {path}")
        if not r.success:
            raise GuestError(await r.error() or f"exit status {r.exit_code}", context=f"Failed to list {path}")
        out: List[FileInfo] = []
        base = path.rstrip("/")
        for line in (await r.output()).splitlines():
            parts = line.split("|", 4)
            if len(parts) != 5:
                continue
            t, size, mode, mtime, name = parts
            try:
                out.append(FileInfo(name, f"{base}/{name}", _kind(t), int(size), int(mode, 8), int(mtime)))
            except ValueError:
                continue
        out.sort(key=lambda e: e.name)
        return out
