"""The dataset types the training recipe reads, by name: the keys of ``streamvggt.train.data.mix.READERS``.

Listed here without importing the readers (which import torch), so that ``streamvggt data --help`` and argument
checks answer at once; ``tests/test_data_layouts.py`` keeps the two lists equal.
"""

READER_TYPES = (
    "arkitscenes",
    "arkitscenes_highres",
    "blendedmvs",
    "co3d",
    "generic",
    "hypersim",
    "megadepth",
    "mvs_synth",
    "omniobject3d",
    "pointodyssey",
    "scannet",
    "scannetpp",
    "spring",
    "synthetic",
    "vkitti2",
    "waymo",
    "wildrgbd",
)
