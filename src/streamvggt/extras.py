"""Optional dependencies: importing a module of an extra (``pip install 'streamvggt[viewer]'``) or saying which
install command provides it.

The core install runs inference (``reconstruct``, the Python API); the viewer, training, evaluation and loop
closure each need an extra. Modules of an extra import their optional packages with :func:`require`, so that a
missing one is one line naming the fix instead of a ModuleNotFoundError traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# What each extra enables, as the subject of the message ("the viewer needs viser: ...").
EXTRA_PURPOSES = {"viewer": "the viewer", "train": "training", "eval": "evaluation", "mapping": "loop closure"}
# Distribution names that differ from the module's import name.
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow"}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the ``pip install`` that fixes it."""


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names too), or raise MissingExtraError naming ``extra``.

    purpose: the subject of the message; by default what the extra is for (``EXTRA_PURPOSES``).
    An ImportError raised inside an installed package (a broken dependency of its own) is not hidden.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if not missing or not (module == missing or module.startswith(missing + ".")):
            raise
        top = missing.partition(".")[0]
        package = DISTRIBUTIONS.get(top, top)
        subject = purpose or EXTRA_PURPOSES[extra]
        raise MissingExtraError(f"{subject} needs {package}: pip install 'streamvggt[{extra}]'", name=missing) from None
