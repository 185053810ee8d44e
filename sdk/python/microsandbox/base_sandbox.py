"""BaseSandbox: start/stop, the `command`, `metrics` and `files` namespaces."""

import uuid
import warnings
from abc import ABC, abstractmethod
from typing import Any, Dict, Generator, List, Optional, Type, TypeVar

from .client import Client
from .command import Command
from .errors import InvalidRequest, NotStarted
from .execution import Execution
from .files import Files
from .metrics import Metrics

S = TypeVar("S", bound="BaseSandbox")


class _Creator:
    """What `create()` returns: use it as `async with X.create(...) as sb`
    (started on entry, stopped on exit, as upstream) or `sb = await
    X.create(...)` (started; stop it yourself)."""

    def __init__(self, cls: Type[S], kwargs: Dict[str, Any], start_kwargs: Dict[str, Any]) -> None:
        self._cls = cls
        self._kwargs = kwargs
        self._start_kwargs = start_kwargs
        self._sandbox: Optional[BaseSandbox] = None

    async def _make(self) -> "BaseSandbox":
        sb = self._cls(**self._kwargs)
        await sb.start(**self._start_kwargs)
        return sb

    def __await__(self) -> Generator[Any, None, "BaseSandbox"]:
        return self._make().__await__()

    async def __aenter__(self) -> Any:
        sb = self._cls(**self._kwargs)
        self._sandbox = sb
        try:
            await sb.start(**self._start_kwargs)
        except BaseException:
            await sb.stop()
            raise
        return sb

    async def __aexit__(self, *exc: Any) -> None:
        if self._sandbox is not None:
            await self._sandbox.stop()


class BaseSandbox(ABC):
    """One named sandbox on one server.  Attribute names (`_name`,
    `_server_url`, `_api_key`, `_is_started`) are upstream's, for code that
    reached into them."""

    _language = "python"

    def __init__(
        self,
        server_url: Optional[str] = None,
        namespace: str = "default",
        name: Optional[str] = None,
        api_key: Optional[str] = None,
    ) -> None:
        self._client = Client(server_url, api_key)
        self._server_url = self._client.server_url
        self._api_key = self._client.api_key
        self._namespace = namespace  # accepted for upstream code; the server has none
        self._name = name or f"sandbox-{uuid.uuid4().hex[:8]}"
        self._is_started = False
        self._session: Any = None  # upstream held an aiohttp session here

    @classmethod
    def create(
        cls: Type[S],
        server_url: Optional[str] = None,
        namespace: str = "default",
        name: Optional[str] = None,
        api_key: Optional[str] = None,
        cpus: Optional[float] = None,
        memory: Optional[int] = None,
        timeout: Optional[float] = None,
        **start_kwargs: Any,
    ) -> Any:
        """`async with PythonSandbox.create(name=..., server_url=..., api_key=...) as sb:`
        starts the sandbox and stops it at the end.  Extra keyword arguments
        (image=, volumes=, ...) go to start()."""
        if cpus is not None:
            start_kwargs["cpus"] = cpus
        if memory is not None:
            start_kwargs["memory"] = memory
        if timeout is not None:
            start_kwargs["timeout"] = timeout
        kwargs = {"server_url": server_url, "namespace": namespace, "name": name, "api_key": api_key}
        return _Creator(cls, kwargs, start_kwargs)

    @abstractmethod
    async def get_default_image(self) -> str: ...

    @property
    def name(self) -> str:
        return self._name

    @property
    def server_url(self) -> str:
        return self._server_url

    @property
    def is_started(self) -> bool:
        return self._is_started

    def _require_started(self) -> None:
        if not self._is_started:
            raise NotStarted("Sandbox is not started. Call start() first.")

    async def start(
        self,
        image: Optional[str] = None,
        memory: int = 512,
        cpus: float = 1.0,
        volumes: Optional[List[str]] = None,
        ports: Optional[List[str]] = None,
        envs: Optional[List[str]] = None,
        depends_on: Optional[List[str]] = None,
        workdir: Optional[str] = None,
        shell: Optional[str] = None,
        scripts: Optional[Dict[str, str]] = None,
        exec: Optional[str] = None,
        timeout: float = 180.0,
    ) -> None:
        """Start the sandbox (sandbox.start).  `memory` in MiB; `cpus` is
        rounded to a whole number of vCPUs (at least 1); `timeout` is how long
        the client waits for the server (plus 30 s)."""
        if self._is_started:
            return
        if cpus is None or cpus != cpus or cpus < 0:
            raise InvalidRequest(f"cpus must be a positive number, not {cpus!r}")
        config: Dict[str, Any] = {
            "image": image or await self.get_default_image(),
            "memory": int(memory),
            "cpus": max(1, int(round(cpus))),
        }
        for key, value in (
            ("volumes", volumes),
            ("ports", ports),
            ("envs", envs),
            ("depends_on", depends_on),
            ("workdir", workdir),
            ("shell", shell),
            ("scripts", scripts),
            ("exec", exec),
        ):
            if value is not None:
                config[key] = list(value) if isinstance(value, (list, tuple)) else value
        result = await self._client.rpc(
            "sandbox.start",
            {"sandbox": self._name, "config": config},
            timeout=timeout + 30,
            context="Failed to start sandbox",
        )
        if isinstance(result, str) and "timed out waiting" in result:
            warnings.warn(f"Sandbox start warning: {result}")
        self._is_started = True

    async def stop(self) -> None:
        """Stop the sandbox (sandbox.stop); a no-op when it was not started."""
        if not self._is_started:
            return
        await self._client.rpc("sandbox.stop", {"sandbox": self._name}, context="Failed to stop sandbox")
        self._is_started = False

    async def run(self, code: str, timeout: Optional[float] = None) -> Execution:
        """Run `code` in the sandbox's persistent REPL (variables survive
        between runs).  `timeout` in seconds is enforced by the server."""
        self._require_started()
        params: Dict[str, Any] = {"sandbox": self._name, "language": self._language, "code": code}
        if timeout is not None:
            params["timeout"] = timeout
        result = await self._client.rpc(
            "sandbox.repl.run",
            params,
            timeout=None if timeout is None else timeout + 30,
            context="Failed to execute code",
        )
        return Execution(output_data=result)

    @property
    def command(self) -> Command:
        return Command(self)

    @property
    def metrics(self) -> Metrics:
        return Metrics(self)

    @property
    def files(self) -> Files:
        return Files(self)
