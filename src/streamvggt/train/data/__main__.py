"""``python -m streamvggt.train.data``: see :func:`streamvggt.train.data.command.main`."""

import sys

from streamvggt.train.data.command import main

if __name__ == "__main__":
    sys.exit(main())
