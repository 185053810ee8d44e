"""`sandbox.command`: upstream's `run()` plus streamed processes (`stream()`)."""

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Sequence, Union

from . import _http
from .errors import ProtocolError, Timeout, from_response
from .execution import CommandExecution

if TYPE_CHECKING:
    from .base_sandbox import BaseSandbox


@dataclass
class Output:
    """One piece of a process's output, as it came: `data` is text, or bytes
    when the chunk was not valid UTF-8."""

    stream: str  # "stdout" | "stderr"
    data: Union[str, bytes]

    @property
    def text(self) -> str:
        if isinstance(self.data, bytes):
            return self.data.decode("utf-8", "replace")
        return self.data


class Process:
    """A command running in the sandbox, its output streamed.

    `async for out in proc` yields `Output` pieces until the process ends;
    then `exit_code` (-1 when killed by a signal), `signal`, `timed_out` and
    `out_of_memory` (the guest's memory guard killed it) are set.  `write()`/`close_stdin()` feed its stdin (start it with
    `stdin=True`), `send_signal()` signals it, `wait()` reads the rest of the
    stream and returns the exit code.  `close()` (or leaving `async with`)
    drops the connection, which makes the server kill the process if it still
    runs.
    """

    def __init__(self, sandbox: "BaseSandbox", resp: _http.Response, context: str) -> None:
        self._sandbox = sandbox
        self._resp = resp
        self._context = context
        self.id: str = resp.headers.get("x-msb-exec", "")
        self.exit_code: Optional[int] = None
        self.signal: Optional[int] = None
        self.timed_out: bool = False
        self.out_of_memory: bool = False
        self.finished = False
        self._lines = resp.iter_lines()
        self._stdout: List[str] = []
        self._stderr: List[str] = []

    def __aiter__(self) -> "Process":
        return self

    async def __anext__(self) -> Output:
        while not self.finished:
            try:
                raw = await self._lines.__anext__()
            except StopAsyncIteration:
                self.finished = True
                raise ProtocolError(
                    "the output stream ended without an exit event", context=self._context
                ) from None
            if not raw.strip():
                continue  # keep-alive
            try:
                ev = json.loads(raw)
            except ValueError as e:
                raise ProtocolError(f"bad stream event {raw[:200]!r}", context=self._context) from e
            kind = ev.get("event")
            if kind == "started":
                self.id = ev.get("exec", self.id)
            elif kind in ("stdout", "stderr"):
                if "data_base64" in ev:
                    data: Union[str, bytes] = base64.b64decode(ev["data_base64"])
                else:
                    data = str(ev.get("data", ""))
                out = Output(kind, data)
                (self._stdout if kind == "stdout" else self._stderr).append(out.text)
                return out
            elif kind == "exit":
                self.exit_code = ev.get("exit_code")
                self.signal = ev.get("signal")
                self.timed_out = bool(ev.get("timed_out", False))
                self.out_of_memory = bool(ev.get("out_of_memory", False))
                self.finished = True
                self._resp.close()
            elif kind == "error":
                self.finished = True
                self._resp.close()
                body = json.dumps({"error": {"code": ev.get("code"), "message": ev.get("message")}})
                raise from_response(500, body.encode(), self._context)
        raise StopAsyncIteration

    async def wait(self, timeout: Optional[float] = None) -> int:
        """Read the stream to its end; returns the exit code (-1: signalled).
        With `timeout`, raises Timeout if it has not ended by then (the
        process keeps running: close() or send_signal() to stop it)."""
        import asyncio

        async def drain() -> None:
            async for _ in self:
                pass

        if timeout is None:
            await drain()
        else:
            try:
                await asyncio.wait_for(drain(), timeout)
            except asyncio.TimeoutError as e:
                raise Timeout(f"the process did not end within {timeout} s", context=self._context) from e
        return self.exit_code if self.exit_code is not None else -1

    def stdout(self) -> str:
        """Everything read from stdout so far."""
        return "".join(self._stdout)

    def stderr(self) -> str:
        return "".join(self._stderr)

    async def write(self, data: Union[str, bytes]) -> int:
        """Write to the process's stdin; returns the bytes written."""
        params: Dict[str, Any] = {"exec": self.id}
        if isinstance(data, str):
            params["data"] = data
        else:
            params["data_base64"] = base64.b64encode(data).decode()
        res = await self._sandbox._client.rpc(
            "sandbox.exec.stdin", params, context="Failed to write to the process's stdin"
        )
        return int(res.get("written", 0)) if isinstance(res, dict) else 0

    async def close_stdin(self) -> None:
        await self._sandbox._client.rpc(
            "sandbox.exec.stdin", {"exec": self.id, "eof": True}, context="Failed to close stdin"
        )

    async def send_signal(self, sig: Union[int, str] = "SIGTERM") -> None:
        await self._sandbox._client.rpc(
            "sandbox.exec.signal", {"exec": self.id, "signal": sig}, context="Failed to signal the process"
        )

    async def kill(self) -> None:
        await self.send_signal("SIGKILL")

    def close(self) -> None:
        self.finished = True
        self._resp.close()

    async def __aenter__(self) -> "Process":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class Command:
    """`sandbox.command`."""

    def __init__(self, sandbox: "BaseSandbox") -> None:
        self._sandbox = sandbox

    async def run(
        self, command: str, args: Optional[List[str]] = None, timeout: Optional[int] = None
    ) -> CommandExecution:
        """Run `command` with `args` to completion; output is collected.
        `timeout` (seconds) is enforced by the server; the client waits 30 s
        longer before giving up itself."""
        sb = self._sandbox
        sb._require_started()
        params: Dict[str, Any] = {"sandbox": sb._name, "command": command, "args": list(args or [])}
        if timeout is not None:
            params["timeout"] = timeout
        res = await sb._client.rpc(
            "sandbox.command.run",
            params,
            timeout=None if timeout is None else timeout + 30,
            context="Failed to execute command",
        )
        return CommandExecution(output_data=res)

    async def stream(
        self,
        command: str,
        args: Optional[Sequence[str]] = None,
        *,
        env: Optional[Dict[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[float] = None,
        stdin: bool = False,
        tty: bool = False,
    ) -> Process:
        """Start `command` and return a `Process` whose output arrives as it is
        written (sandbox.exec.stream)."""
        sb = self._sandbox
        sb._require_started()
        params: Dict[str, Any] = {"sandbox": sb._name, "command": command, "args": list(args or [])}
        if env:
            params["env"] = [f"{k}={v}" for k, v in env.items()]
        if cwd is not None:
            params["cwd"] = cwd
        if timeout is not None:
            params["timeout"] = timeout
        if stdin:
            params["stdin"] = True
        if tty:
            params["tty"] = True
        context = f"Failed to run {command!r}"
        resp = await sb._client.open_stream("sandbox.exec.stream", params, context=context)
        return Process(sb, resp, context)
