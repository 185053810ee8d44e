"""`sandbox.metrics`: upstream's accessors over sandbox.metrics.get."""

from typing import TYPE_CHECKING, Any, Dict, Optional

from .errors import ProtocolError

if TYPE_CHECKING:
    from .base_sandbox import BaseSandbox


class Metrics:
    def __init__(self, sandbox: "BaseSandbox") -> None:
        self._sandbox = sandbox

    async def _get_metrics(self) -> Dict[str, Any]:
        sb = self._sandbox
        sb._require_started()
        res = await sb._client.rpc(
            "sandbox.metrics.get",
            {"sandbox": sb._name},
            context="Failed to get sandbox metrics",
        )
        if not isinstance(res, dict):
            raise ProtocolError(f"bad sandbox.metrics.get result {res!r}")
        boxes = res.get("sandboxes") or []
        return dict(boxes[0]) if boxes else {}

    async def all(self) -> Dict[str, Any]:
        """{name, running, cpu_usage, memory_usage (MiB), disk_usage (bytes)}."""
        return await self._get_metrics()

    async def cpu(self) -> Optional[float]:
        """CPU usage in percent, or None when not available."""
        return (await self._get_metrics()).get("cpu_usage")

    async def memory(self) -> Optional[int]:
        """Memory usage in MiB, or None."""
        return (await self._get_metrics()).get("memory_usage")

    async def disk(self) -> Optional[int]:
        """Disk usage in bytes, or None."""
        return (await self._get_metrics()).get("disk_usage")

    async def is_running(self) -> bool:
        return bool((await self._get_metrics()).get("running", False))
