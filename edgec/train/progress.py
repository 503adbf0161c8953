"""What the training loop shows: a batch progress bar and one summary line per epoch.

Output goes to edgec's console (stderr). The bar is drawn only on an interactive terminal; in CI
logs (not a TTY) it is off and only the plain summary lines are printed, so logs stay readable.
``enabled=False`` prints nothing.

Example:
    >>> reporter = Reporter("teacher", enabled=True)
    >>> with reporter.epoch(1, 10, total_batches=50) as advance:
    ...     advance(loss=0.42)          # once per batch
    >>> reporter.line("epoch 1/10  train_loss 0.4200 ...")
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgec.console import console as edgec_console


class Reporter:
    """Progress output for one :func:`edgec.train.fit` call (``description`` labels every line)."""

    def __init__(self, description: str, enabled: bool = True):
        self.description = description
        self.enabled = enabled
        self._console = None
        if enabled:
            self._console = edgec_console  # edgec's one console (stderr: stdout stays clean for --json output)

    def line(self, text: str) -> None:
        """Print one plain line (no rich markup: descriptions may contain brackets)."""
        if self._console is not None:
            self._console.print(f"{self.description}: {text}", markup=False, highlight=False,
                                soft_wrap=True)

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, total_batches: int) -> Iterator[Callable[..., None]]:
        """Yield ``advance(loss=...)``, to call once per batch; the bar disappears at the end."""
        console = self._console
        if console is None or not console.is_interactive:
            yield lambda loss=None: None
            return
        columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"{self.description} {epoch}/{epochs}", total=total_batches,
                                loss="-")

            def advance(loss: float | None = None) -> None:
                bar.update(task, advance=1, loss="-" if loss is None else f"{loss:.4f}")

            yield advance
