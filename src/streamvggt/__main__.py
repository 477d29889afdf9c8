"""``python -m streamvggt``: the same as the ``streamvggt`` command (also under torchrun or accelerate launch)."""

from streamvggt.cli import main

raise SystemExit(main())
