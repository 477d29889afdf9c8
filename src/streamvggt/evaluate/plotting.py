"""The protocols' figures: matplotlib without a display, and saving a figure atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvggt.extras import require
from streamvggt.io.atomic import atomic_output
from streamvggt.io.errors import OutputError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (figures are files; no display is needed or opened)."""
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 80, tight: bool = True) -> None:
    """Write ``fig`` to ``path`` as PNG (folders created, no half-written file left) and close it.

    tight: run ``tight_layout`` first (figures with fixed margins skip it: it can take longer than drawing).
    Raises OutputError with a one-line message when the file or its folder cannot be written.
    """
    plt = pyplot()
    try:
        if tight:
            fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    except OSError as error:
        raise OutputError(f"cannot write the figure {path}: {error.strerror or error}") from error
    finally:
        plt.close(fig)
