"""Jetson board power from ``tegrastats`` output: the fallback when sysfs rails are not readable.

Rail formats, all in milliwatts, first value = current reading:

* JetPack 5/6: ``VDD_GPU_SOC 2390mW/2390mW`` (current/average);
* JetPack 7.x: ``VDD_GPU_SOC 5139mW/5139mW/5139mW`` (current/average/maximum);
* JetPack 4:   ``POM_5V_IN 2390/2390`` (no unit; Nano), ``GPU 0/0 CPU 155/155`` (AGX Xavier);
* a lone ``VDD_IN 5000mW`` (no average) is read too.

The meter runs ``tegrastats --interval <ms>`` as a subprocess and a reader thread keeps the latest
line's rails; ``read_power_w`` returns that latest value, so readings are a step function that
changes every ``interval_ms``.

Example:
    >>> parse_tegrastats_line("RAM 1655/3956MB CPU [12%@102] POM_5V_IN 2132/2132 POM_5V_GPU 78/78")
    {'POM_5V_IN': 2132.0, 'POM_5V_GPU': 78.0}
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

from edgec.bench.meters.base import PowerMeter, total_of_rails, total_scope

__all__ = ["TegrastatsMeter", "parse_tegrastats_line"]

_NUM = r"(\d+(?:\.\d+)?)"
# NAME cur[mW]/avg[mW][/max[mW]], not followed by a letter: "RAM 1655/3956MB" and
# "IRAM 0/252kB" end in a unit, so the lookahead rejects them; "cpu@52.9C/52.9C" has no space.
_RAIL_RE = re.compile(
    rf"(?<![\w@.])([A-Za-z][A-Za-z0-9_]*) {_NUM}(mW)?/{_NUM}(?:mW)?(?:/{_NUM}(?:mW)?)?(?![\w.%@/])")
# A lone "NAME 5000mW" (no average) is accepted too; without the unit "APE 174" would match.
_SINGLE_RE = re.compile(rf"(?<![\w@.])([A-Za-z][A-Za-z0-9_]*) {_NUM}mW(?![\w.%@/])")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "LFB"}


def parse_tegrastats_line(line: str) -> dict[str, float]:
    """Current power of each rail on one tegrastats line, in mW (``{}`` when it has no rails).

    Example:
        >>> parse_tegrastats_line("VDD_GPU_SOC 5139mW/5139mW/5139mW VDD_CPU_CV 0mW/0mW/0mW")
        {'VDD_GPU_SOC': 5139.0, 'VDD_CPU_CV': 0.0}
    """
    matches = sorted([*_RAIL_RE.finditer(line), *_SINGLE_RE.finditer(line)],
                     key=lambda m: m.start())
    return {m.group(1): float(m.group(2)) for m in matches if m.group(1).upper() not in _NOT_RAILS}


class TegrastatsMeter(PowerMeter):
    """Runs ``tegrastats --interval interval_ms`` and reads its rails (``command`` overrides it)."""

    name = "tegrastats"
    hint = ("run on a Jetson with JetPack's tegrastats on PATH (it is /usr/bin/tegrastats), or use "
            "the 'ina3221-hwmon' meter")

    def __init__(self, root: Path = Path("/"), interval_ms: int = 100,
                 command: list[str] | None = None, first_line_timeout_s: float = 3.0):
        super().__init__()
        self.root = Path(root)
        self.interval_ms = int(interval_ms)
        self.update_interval_s = self.interval_ms / 1e3
        self.command = command
        self.first_line_timeout_s = first_line_timeout_s
        self.notes = [f"tegrastats refreshes every {self.interval_ms} ms; readings between "
                      "refreshes repeat the last line"]
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._latest: dict[str, float] = {}
        self._lines = 0
        self._got_line = threading.Event()
        self._lock = threading.Lock()
        self._failure = ""

    def _executable(self) -> str | None:
        if self.command:
            return self.command[0]
        if self.root == Path("/"):
            return shutil.which("tegrastats")
        for folder in ("usr/bin", "usr/sbin", "usr/local/bin"):
            if (self.root / folder / "tegrastats").is_file():
                return str(self.root / folder / "tegrastats")
        return None

    def _start(self) -> None:
        if self._proc is not None:
            return
        exe = self._executable()
        if exe is None:
            raise FileNotFoundError("tegrastats")
        args = list(self.command or [exe]) + ["--interval", str(self.interval_ms)]
        self._got_line.clear()
        self._latest, self._failure = {}, ""
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, bufsize=1)
        self._thread = threading.Thread(target=self._reader, args=(self._proc,), daemon=True,
                                        name="edgec-tegrastats")
        self._thread.start()

    def _reader(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            rails = parse_tegrastats_line(line)
            if rails:
                with self._lock:
                    self._latest, self._lines = rails, self._lines + 1
                self._got_line.set()
        err = proc.stderr.read().strip()
        proc.stdout.close()
        proc.stderr.close()
        self._failure = f"tegrastats exited (code {proc.wait()}){': ' + err if err else ''}"
        self._got_line.set()  # wake a waiter: it will see the failure

    def available(self) -> tuple[bool, str]:
        if self._executable() is None:
            return False, ("tegrastats is not on PATH (not a Jetson, or JetPack's tools are not "
                           "installed)")
        try:
            self._start()
        except OSError as exc:
            return False, f"cannot start tegrastats: {exc}"
        if not self._got_line.wait(self.first_line_timeout_s):
            return False, f"tegrastats printed no power rails within {self.first_line_timeout_s} s"
        if not self._latest:
            return False, self._failure or "tegrastats printed no power rails"
        with self._lock:
            self.scope = "Jetson " + total_scope(list(self._latest))
        return True, ""

    def rails(self) -> dict[str, float]:
        self._start()
        if not self._got_line.wait(self.first_line_timeout_s) or not self._latest:
            raise RuntimeError(self._failure or "tegrastats printed no power rails")
        with self._lock:
            return {name: mw / 1e3 for name, mw in self._latest.items()}

    def read_power_w(self) -> float | None:
        return total_of_rails(self.rails())

    def sample(self) -> tuple[float | None, float | None, dict[str, float]]:
        rails = self.rails()
        return total_of_rails(rails), None, rails

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)  # it reads to EOF, then closes the pipes
            self._thread = None
