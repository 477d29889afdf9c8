"""The ``streamvggt data import`` subcommand: its arguments and what running it does."""

from __future__ import annotations

import argparse
import sys

from streamvggt.extras import MissingExtraError
from streamvggt.io.errors import InputError, OutputError
from streamvggt.train.data.importers.colmap import DEPTH_SOURCES, import_colmap
from streamvggt.train.data.importers.reconstruction import import_reconstruction


class DataCommandError(Exception):
    """A data command that cannot run: a one-line message and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


SOURCES = ("colmap", "reconstruct")

DESCRIPTION = """\
Import a capture as one scene of the generic training layout (rgb/, depth/, cam/ per frame, import.json).
  --from colmap SRC: SRC holds the sparse model (SRC, SRC/sparse or SRC/sparse/0) and SRC/images; a dense
    workspace (colmap image_undistorter + patch_match_stereo) also has SRC/stereo/depth_maps. Distorted cameras
    are undistorted with COLMAP's undistorter.
  --from reconstruct SRC: an output folder of streamvggt reconstruct (pseudo-labels in the model's units).
Depth and poses are not metric: train on the scene with is_metric: false. --depth none writes all-zero depth
(every pixel unknown): such frames supervise only the cameras."""

EPILOG = """\
examples:
  streamvggt data import --from colmap my_project/ -o data/own/my_capture
  streamvggt data import --from colmap my_project/dense -o data/own/my_capture --depth sparse
  streamvggt data import --from reconstruct out/ -o data/own/pseudo --min-conf-percentile 30
  streamvggt data check --type generic data/own --option is_metric=false --option static=true --num-views 4
exit status: 0 when the scene was written, 1 when the source or the output cannot be used (one line says why).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The import options on ``parser``."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--from", dest="source_kind", required=True, choices=SOURCES, help="what SRC is")
    parser.add_argument("source", metavar="SRC", help="the COLMAP project or reconstruct output folder")
    parser.add_argument("-o", "--output", required=True, metavar="ROOT/SCENE", help="the scene folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace ROOT/SCENE when it is not empty")
    colmap = parser.add_argument_group("colmap")
    colmap.add_argument("--images", metavar="DIR", help="the images COLMAP saw (default: SRC/images)")
    colmap.add_argument(
        "--depth",
        choices=DEPTH_SOURCES,
        default="auto",
        help="dense: SRC/stereo/depth_maps; sparse: the model's points projected into each image (mostly 0); "
        "none: all 0; auto (default): dense when that folder exists, else sparse",
    )
    colmap.add_argument("--depth-maps", metavar="DIR", help="the dense depth maps (default: SRC/stereo/depth_maps)")
    recon = parser.add_argument_group("reconstruct")
    recon.add_argument(
        "--min-conf-percentile",
        type=float,
        default=0.0,
        metavar="P",
        help="drop each frame's depth below its P-th confidence percentile (default 0: keep all)",
    )


def run(args: argparse.Namespace) -> int:
    """Import as ``args`` say; 0 on success. DataCommandError (status 1) when the input or output is unusable."""
    try:
        if args.source_kind == "colmap":
            scene = import_colmap(
                args.source, args.output, args.images, args.depth, args.depth_maps, overwrite=args.overwrite
            )
        else:
            scene = import_reconstruction(args.source, args.output, args.min_conf_percentile, args.overwrite)
    except (InputError, OutputError, MissingExtraError) as error:
        raise DataCommandError(str(error), 1) from None
    frames = len(list((scene / "rgb").iterdir()))
    sys.stdout.write(f"imported {frames} frames into {scene}: a generic dataset with root {scene.parent}\n")
    return 0
