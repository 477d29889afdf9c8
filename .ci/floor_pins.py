"""Print the lower bounds of streamvggt's core requirements as exact pins (``name==floor``), one a line; with
``--check``, compare them with the installed versions instead (exit status 1 on a difference).

``make test-min-deps`` installs the package with these as pip constraints, so that its tests run against the
oldest releases that pyproject.toml declares. Reads the installed package's metadata: install it first
(``pip install --no-deps -e .``). A core requirement without a lower bound is an error: it would be untested.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import requires, version

FLOOR = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([^,;\s]+)")


def floor_pins(requirements: list[str]) -> list[str]:
    """``name==floor`` for each requirement without an environment marker (extras carry ``extra == ...``)."""
    pins = []
    for requirement in requirements:
        if ";" in requirement:
            continue
        match = FLOOR.match(requirement.strip())
        if match is None:
            raise ValueError(f"no lower bound in core requirement '{requirement}'")
        pins.append(f"{match[1]}=={match[2]}")
    return pins


def release(text: str) -> tuple[int, ...]:
    """The release numbers of a version without trailing zeros or a local tag: 2.6.0+cu124 -> (2, 6)."""
    numbers = [int(part) for part in re.match(r"[0-9.]*[0-9]", text)[0].split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def main(argv: list[str]) -> int:
    try:
        pins = floor_pins(requires("streamvggt") or [])
    except ValueError as error:
        print(f"floor_pins: {error}", file=sys.stderr)
        return 1
    if argv != ["--check"]:
        print("\n".join(pins))
        return 0
    differ = 0
    for pin in pins:
        name, floor = pin.split("==")
        installed = version(name)
        same = release(installed) == release(floor)
        differ += not same
        print(f"{name}=={floor}: {installed} installed{'' if same else ' (differs)'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
