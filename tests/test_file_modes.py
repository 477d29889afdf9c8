"""Files the project writes get the mode the umask allows (0644 under umask 022), as ``open`` gives: teammates on a
shared machine can read each other's models, checkpoints and exports."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamvggt.io.atomic import atomic_output


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_an_atomic_file_written_by_a_library_that_makes_it_private_gets_the_umask_mode(tmp_path, mask, expected):
    with umask(mask), atomic_output(tmp_path / "out.bin") as tmp:
        # What safetensors (and tempfile.mkstemp) do: create the file readable by its owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"data")
        os.close(fd)
    assert mode(tmp_path / "out.bin") == expected


def test_save_pretrained_writes_weights_others_can_read_under_umask_022(tmp_path):
    from streamvggt import ModelConfig, StreamVGGT
    from streamvggt.weights import CONFIG_NAME, WEIGHTS_NAME, save_pretrained

    model = StreamVGGT(ModelConfig.preset("tiny"))
    with umask(0o022):
        save_pretrained(model, tmp_path / "model")
    assert mode(tmp_path / "model" / WEIGHTS_NAME) == 0o644
    assert mode(tmp_path / "model" / CONFIG_NAME) == 0o644


def test_exports_are_readable_by_others_under_umask_022(tmp_path):
    from tests.export_scene import write_scene

    with umask(0o022):
        out = write_scene(tmp_path / "out")
    files = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    assert files
    assert {str(p.relative_to(out)): mode(p) for p in files if mode(p) != 0o644} == {}
