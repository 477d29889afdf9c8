"""``streamvggt data import``: a user's own capture as a scene of the ``generic`` training layout.

Sources: a COLMAP project (:func:`import_colmap`) or a ``streamvggt reconstruct`` output folder
(:func:`import_reconstruction`). The command line is :func:`add_arguments` + :func:`run`.
"""

from streamvggt.train.data.importers.colmap import import_colmap
from streamvggt.train.data.importers.command import EPILOG, add_arguments, run
from streamvggt.train.data.importers.reconstruction import import_reconstruction

__all__ = ["EPILOG", "add_arguments", "import_colmap", "import_reconstruction", "run"]
