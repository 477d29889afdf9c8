"""``python -m streamvggt.train``: see :func:`streamvggt.train.command.main`."""

import sys

from streamvggt.train.command import main

if __name__ == "__main__":
    sys.exit(main())
