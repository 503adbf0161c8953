"""Atomic file writes: a file either appears complete under its final name or not at all.

Everything edgec writes that another step will trust (checkpoints, ONNX files, manifests, reports)
goes through here: write to a temporary file *in the same folder* (so ``os.replace`` is a rename on
one filesystem), flush and fsync it, then rename it over the target. A crash, a full disk or a
Ctrl-C leaves at worst a ``.tmp-*`` file that is never mistaken for a finished artifact and is
removed on the next write.

Example:
    >>> with atomic_path("runs/digits/model.onnx") as tmp:
    ...     torch.onnx.export(model, (x,), tmp)
    >>> atomic_write_text("runs/digits/report.md", "# Report\\n")
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgec.errors import ArtifactError

TMP_PREFIX = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not all filesystems allow opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _explain_os_error(exc: OSError, path: Path) -> ArtifactError:
    if exc.errno == errno.ENOSPC:
        return ArtifactError(f"no space left on the device while writing {path}",
                             hint="free some disk space or choose another --out folder, then run again "
                                  "(finished stages are kept and reused)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ArtifactError(f"cannot write {path}: {exc.strerror}",
                             hint="choose a writable output folder with --out")
    return ArtifactError(f"could not write {path}: {exc}", hint="check the output folder and the disk")


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed to ``path``.

    The caller writes the temporary file however it likes (``torch.save``, ``onnx.save``...).
    On any exception, KeyboardInterrupt included, the temporary file is removed and ``path`` is
    left untouched.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _explain_os_error(exc, target) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask),
        # so deployed models and reports are readable by the users and services that ship them.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _explain_os_error(exc, target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete ``.tmp-*`` leftovers of interrupted writes in ``folder``; return how many."""
    n = 0
    for p in Path(folder).glob(TMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n
