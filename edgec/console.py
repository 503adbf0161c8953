"""The one rich console edgec prints through (stderr, so stdout stays clean for --json output)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """Print a progress line, e.g. ``say("[bold]teacher[/] cached")``."""
    console.print(message, soft_wrap=True)  # no hard wraps at 80 columns in CI logs


def warn(message: str) -> None:
    """Print a warning the user should read."""
    console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)
