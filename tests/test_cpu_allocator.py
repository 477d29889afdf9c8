"""The malloc settings a CPU stream makes: set once through mallopt, skipped where the user or the platform chose,
and in force in this process (freed activations are reused without page faults)."""

from __future__ import annotations

import resource
import sys
from typing import ClassVar

import pytest
import torch

import streamvggt.runtime.cpu_allocator as cpu_allocator

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc settings")


class FakeLibc:
    """Stands in for ctypes.CDLL(None): records mallopt calls."""

    calls: ClassVar[list[tuple[int, int]]] = []

    def __init__(self, name: object) -> None:
        self.mallopt = FakeMallopt()


class FakeMallopt:
    def __call__(self, param: int, value: int) -> int:
        FakeLibc.calls.append((param, value))
        return 1


@pytest.fixture
def fresh(monkeypatch):
    """No settings made yet in this process (as far as the module knows), a recording libc and a clean env."""
    monkeypatch.setattr(cpu_allocator, "_state", {})
    monkeypatch.setattr(cpu_allocator.ctypes, "CDLL", FakeLibc)
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("glibc", "2.36"))
    chosen = [n for n in cpu_allocator.os.environ if n.startswith("MALLOC_") or n in ("LD_PRELOAD", "GLIBC_TUNABLES")]
    for name in chosen:
        monkeypatch.delenv(name)
    monkeypatch.delenv(cpu_allocator.OPT_OUT_ENV, raising=False)
    FakeLibc.calls = []


def test_settings_are_made_once_with_glibcs_parameters(fresh):
    assert cpu_allocator.keep_freed_memory() and cpu_allocator.keep_freed_memory()
    # M_MMAP_THRESHOLD (-3) at glibc's 64-bit maximum, M_TRIM_THRESHOLD (-1) as high as an int goes, M_TOP_PAD (-2).
    assert FakeLibc.calls == [(-3, 32 * 2**20), (-1, 2**31 - 1), (-2, 512 * 2**20)]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STREAMVGGT_TUNE_MALLOC", "0"),
        ("STREAMVGGT_TUNE_MALLOC", "off"),
        ("MALLOC_ARENA_MAX_", "2"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536"),
        ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    ],
)
def test_a_users_choice_is_left_alone(fresh, monkeypatch, variable: str, value: str):
    monkeypatch.setenv(variable, value)
    assert not cpu_allocator.keep_freed_memory()
    assert FakeLibc.calls == []


def test_other_c_libraries_are_left_alone(fresh, monkeypatch):
    monkeypatch.setattr(cpu_allocator.platform, "libc_ver", lambda: ("", ""))
    assert not cpu_allocator.keep_freed_memory()
    assert FakeLibc.calls == []


def test_in_this_process_freed_activations_come_back_without_page_faults():
    if not cpu_allocator.keep_freed_memory():
        pytest.skip("settings skipped in this environment")
    size = 24 * 2**20 // 4  # 24 MiB: above glibc's default adaptive mmap threshold at start, below its maximum
    for _ in range(30):  # the first allocations touch the heap's fresh pages (the pad) once
        torch.empty(size).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.empty(size).fill_(1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 6144  # one iteration's 6,144 pages: re-faulting every time would be 61,440
