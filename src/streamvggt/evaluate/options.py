"""Option values of the evaluation protocols that the ``eval`` command line lists in its help.

They live here, apart from the modules that implement them, because this module imports nothing: building the
parser (``streamvggt --help``) must not load torch.
"""

DEPTH_ALIGNMENTS = ("median", "scale", "scale&shift", "none")
# How ``scale&shift`` is fitted: ``reference`` runs the reference's Adam loop (its published tables come from it),
# ``exact`` finds the L1 optimum. The other alignments have one solver each.
DEPTH_FITS = ("reference", "exact")
CO3D_NUM_FRAMES = 10  # frames drawn per CO3D sequence by the pose protocol

PROTOCOLS = ("monodepth", "video-depth", "recon", "pose", "synthetic")
DEFAULT_NUM_FRAMES = {"pose": CO3D_NUM_FRAMES, "synthetic": 16}
DEFAULT_SEED, DEFAULT_SEQUENCES = 0, 8
# eval's default precision: the mode the published numbers were made in (fp32 on a CPU, the reference's autocast
# on CUDA), not auto's measurement of this CPU.
REFERENCE_PRECISION = "reference"
