"""The reference outputs in tests/fixtures are the files recorded in its README (no silent edits or truncation)."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.conftest import FIXTURES


def recorded_hashes() -> dict[str, str]:
    """{relative path: sha256} from the table in tests/fixtures/README.md."""
    text = (FIXTURES / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{64})` \|", text, flags=re.MULTILINE))


def test_the_readme_records_every_fixture_file() -> None:
    files = {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*") if p.is_file() and p.name != "README.md"}
    assert set(recorded_hashes()) == files


@pytest.mark.parametrize("name", sorted(recorded_hashes()))
def test_fixture_file_has_its_recorded_hash(name: str) -> None:
    assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == recorded_hashes()[name]
