"""Atomic file writing: a reader never sees a half-written file.

Every artefact the project writes (checkpoints, metrics, predictions, cache entries, figures) goes through
these helpers: the bytes land in a temporary file in the destination folder, are flushed to disk, and the
file is renamed over the destination in one step (``os.replace`` is atomic on POSIX and Windows).

A full disk (or quota) during a write is one :class:`DiskFullError` line naming the file and the space needed;
the temporary file is removed and the previous file at the destination stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DiskFullError",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
]

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """No space left on the device (or quota exceeded) while writing ``path``; one readable line."""

    def __init__(self, path: str | os.PathLike, needed_bytes: int | None = None) -> None:
        path = Path(path)
        try:
            free = f", {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
        except OSError:
            free = ""
        needed = f"{needed_bytes / 1e6:.1f} MB needed" if needed_bytes is not None else "size unknown"
        self.message = f"no space left on device while writing {path} ({needed}{free})"
        super().__init__(errno.ENOSPC, self.message, str(path))

    def __str__(self) -> str:
        return self.message


def _is_disk_full(exc: BaseException, folder: Path, needed_bytes: int | None) -> bool:
    """ENOSPC / EDQUOT anywhere in the exception chain, or a failed C++ write (torch.save) on a full device."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower():
        try:  # torch's stream writer reports ENOSPC as "file write failed": ask the file system
            free = shutil.disk_usage(folder).free
        except OSError:
            return False
        return free < max(needed_bytes or 0, 1 << 20)
    return False


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "wb",
    *,
    expected_bytes: int | None = None,
    durable: bool = True,
    **kwargs: Any,
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``, on error delete it.

    ``expected_bytes`` (the size about to be written, if known) only goes into a :class:`DiskFullError`.
    ``durable``: flush the file to disk (fsync) before the rename, so it survives a power cut. Files that can
    be recomputed and are checked when read (cache entries) pass False: readers still never see half a file,
    and a write costs no disk round trip.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_open writes whole files only; mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, RuntimeError)) and _is_disk_full(exc, path.parent, expected_bytes):
            raise DiskFullError(path, expected_bytes) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    with atomic_open(path, "wb", expected_bytes=len(data), durable=durable) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(
        path, "w", expected_bytes=len(text.encode("utf-8")), encoding="utf-8", newline=""
    ) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file, so a crash mid-save leaves the previous file intact."""
    import torch

    with atomic_open(path, "wb", expected_bytes=_tensor_bytes(obj)) as handle:
        torch.save(obj, handle)
    return Path(path)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of tensor data inside nested dicts / lists (about the size ``torch.save`` writes)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
