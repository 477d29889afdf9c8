"""``python -m streamvggt``: the same as the ``streamvggt`` command."""

from streamvggt.cli import main

raise SystemExit(main())
