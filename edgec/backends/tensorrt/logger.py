"""One TensorRT logger per process, which keeps TensorRT's recent messages so errors can quote them.

TensorRT uses a single logger per process: the first ``ILogger`` given to a Builder, Runtime or ONNX
parser receives every later message, and a different logger given afterwards is ignored (TensorRT
warns "... differs from one already provided ... The first one will be used"). A new capturing
logger per build would therefore stay empty whenever a runner or ``edgec doctor`` created one
first. :func:`process_logger` hands out the same :class:`ILogger` subclass instance for the whole
process (one per ``tensorrt`` module, so tests can pass stand-ins): it keeps the last
:data:`KEEP` warnings and errors, prints errors as they come and each distinct warning once.

Example:
    >>> logger = process_logger(trt)
    >>> mark = logger.mark()
    >>> builder = trt.Builder(logger)          # ... a build that fails ...
    >>> raise EdgecError("TensorRT could not build" + tensorrt_said(logger, mark), hint="...")
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

from edgec.console import warn

__all__ = ["KEEP", "process_logger", "tensorrt_said"]

KEEP = 200
_LOGGERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity
    errors = {severity.INTERNAL_ERROR, severity.ERROR}
    kept = errors | {severity.WARNING}

    class EdgecTensorRTLogger(trt.ILogger):  # type: ignore[name-defined, misc]
        """Keeps warnings and errors (numbered, so a caller can ask for those since a mark)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: deque[tuple[int, str]] = deque(maxlen=KEEP)
            self._count = 0
            self._warned: set[str] = set()
            self._lock = threading.Lock()

        def log(self, severity: Any, msg: str) -> None:  # called by TensorRT: must not raise
            if severity not in kept:
                return
            name = getattr(severity, "name", str(severity))
            with self._lock:
                self._count += 1
                self.messages.append((self._count, f"{name}: {msg}"))
                first = msg not in self._warned
                self._warned.add(msg)
            if severity in errors or first:
                try:
                    warn(f"TensorRT {name}: {msg}")
                except Exception:  # noqa: BLE001 - a logger callback must never raise into TensorRT
                    pass

        def mark(self) -> int:
            """The number of messages so far: pass it to :func:`tensorrt_said` for the later ones."""
            return self._count

        def since(self, mark: int = 0) -> list[str]:
            return [text for n, text in self.messages if n > mark]

    return EdgecTensorRTLogger()


def process_logger(trt: Any) -> Any:
    """The process-wide logger for this ``tensorrt`` module (created on first use).

    Example:
        >>> process_logger(trt) is process_logger(trt)
        True
    """
    with _LOCK:
        logger = _LOGGERS.get(trt)
        if logger is None:
            logger = _LOGGERS[trt] = _make_logger(trt)
        return logger


def tensorrt_said(logger: Any, mark: int = 0, n: int = 10) -> str:
    """TensorRT's errors (else warnings) since ``mark``, as text to append to an error message.

    Example:
        >>> tensorrt_said(process_logger(trt), mark)
        '\\n  TensorRT said:\\n    ERROR: ...'
    """
    said = logger.since(mark)
    errors = [m for m in said if "ERROR" in m.split(":", 1)[0]] or said
    return ("\n  TensorRT said:\n    " + "\n    ".join(errors[-n:])) if errors else ""
