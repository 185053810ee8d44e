"""Results of `run()` and `command.run()`, shaped as upstream's SDK."""

from typing import Any, Dict, List, Optional


def _join(lines: List[Dict[str, Any]], stream: str) -> str:
    return "\n".join(
        str(line.get("text", ""))
        for line in lines
        if isinstance(line, dict) and line.get("stream") == stream
    ).strip()


class Execution:
    """The result of `sandbox.run(code)` (sandbox.repl.run)."""

    def __init__(self, output_data: Optional[Dict[str, Any]] = None) -> None:
        data = output_data if isinstance(output_data, dict) else {}
        out = data.get("output", [])
        self._output_lines: List[Dict[str, Any]] = out if isinstance(out, list) else []
        self._status: str = data.get("status", "unknown")
        self._language: str = data.get("language", "unknown")
        self._has_error = self._status in ("error", "exception") or any(
            isinstance(line, dict) and line.get("stream") == "stderr" and line.get("text")
            for line in self._output_lines
        )

    async def output(self) -> str:
        """The stdout lines joined by newlines, trimmed."""
        return _join(self._output_lines, "stdout")

    async def error(self) -> str:
        """The stderr lines joined by newlines, trimmed."""
        return _join(self._output_lines, "stderr")

    def has_error(self) -> bool:
        """True when the status is error/exception or anything went to stderr."""
        return self._has_error

    @property
    def status(self) -> str:
        return self._status

    @property
    def language(self) -> str:
        return self._language

    @property
    def output_lines(self) -> List[Dict[str, Any]]:
        """The raw [{"stream", "text"}] lines, in order."""
        return list(self._output_lines)


class CommandExecution:
    """The result of `sandbox.command.run(cmd, args)` (sandbox.command.run)."""

    def __init__(self, output_data: Optional[Dict[str, Any]] = None) -> None:
        data = output_data if isinstance(output_data, dict) else {}
        out = data.get("output", [])
        self._output_lines: List[Dict[str, Any]] = out if isinstance(out, list) else []
        self._command: str = data.get("command", "")
        self._args: List[str] = list(data.get("args", []) or [])
        code = data.get("exit_code")
        self._exit_code: int = code if isinstance(code, int) else -1
        self._success: bool = bool(data.get("success", False))
        # This project's extra field (the guest's memory guard killed it); upstream: absent.
        self._out_of_memory: bool = bool(data.get("out_of_memory", False))

    async def output(self) -> str:
        return _join(self._output_lines, "stdout")

    async def error(self) -> str:
        return _join(self._output_lines, "stderr")

    @property
    def exit_code(self) -> int:
        return self._exit_code

    @property
    def success(self) -> bool:
        return self._success

    @property
    def out_of_memory(self) -> bool:
        """True when the guest's memory guard killed the command (exit code 137)."""
        return self._out_of_memory

    @property
    def command(self) -> str:
        return self._command

    @property
    def args(self) -> List[str]:
        return list(self._args)

    @property
    def output_lines(self) -> List[Dict[str, Any]]:
        return list(self._output_lines)
