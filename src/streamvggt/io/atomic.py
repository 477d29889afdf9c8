"""Writing a file under a temporary name and renaming it at the end, so no half-written file is ever seen."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path


def temporary_name(path: Path) -> Path:
    """A hidden name beside ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def current_umask() -> int:
    """The process's umask, read without changing it where the system shows it (Linux), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_mode(path: Path) -> None:
    """Give file ``path`` the mode ``open`` would have given it (0o666 less the umask).

    Some writers (safetensors, ``tempfile.mkstemp``) create files readable by their owner only; a model saved on a
    shared machine should be as readable as the config.json beside it.
    """
    if stat.S_ISREG(path.lstat().st_mode):
        os.chmod(path, 0o666 & ~current_umask())


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` (with the mode the umask allows), on any
    error it is deleted."""
    tmp = temporary_name(path)
    try:
        yield tmp
        give_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
