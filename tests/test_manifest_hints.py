"""A manifest line written with spaces where the tab belongs says so, naming the line (issue 24, item 10)."""

from __future__ import annotations

import pytest

from streamvggt.collection.manifest import read_manifest
from streamvggt.io.errors import InputError


def test_spaces_instead_of_a_tab_get_a_hint_naming_the_line(tmp_path):
    (tmp_path / "clip a.mp4").write_bytes(b"")
    (tmp_path / "frames").mkdir()
    manifest = tmp_path / "list.txt"
    manifest.write_text("clip a.mp4\tfirst\nframes    second\n")
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    assert str(caught.value) == (
        f"{manifest} line 2: 'frames    second' is no input, but 'frames' is: separate the output name 'second' "
        "with a tab, not spaces"
    )


def test_paths_with_spaces_and_tabbed_names_still_read(tmp_path):
    (tmp_path / "clip a.mp4").write_bytes(b"")
    (tmp_path / "my frames").mkdir()
    manifest = tmp_path / "list.txt"
    manifest.write_text("clip a.mp4\n my frames \tsecond\n")
    entries = read_manifest(manifest)
    assert [(e.input, e.name) for e in entries] == [
        (str(tmp_path / "clip a.mp4"), "clip a"),
        (str(tmp_path / "my frames"), "second"),
    ]
