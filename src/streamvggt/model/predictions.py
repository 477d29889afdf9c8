"""The model's outputs as one typed container that still reads like the reference's dict of tensors."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import Tensor

# Where the frame axis S sits in a field (1 unless its metadata says otherwise).
_FRAME_AXIS = "frame_axis"


# Not a collections.abc.Mapping on purpose: Accelerate's mixed-precision output conversion rebuilds a Mapping as
# type(out)(dict), which this class cannot take, and passes other objects through (the heads already return fp32);
# DDP finds a dataclass's tensors field by field.
@dataclass(frozen=True, eq=False, repr=False)
class Predictions:
    """What the offline forward and a streaming step return (see :mod:`streamvggt.geometry` for conventions).

    Shapes are the offline forward's; a streaming step returns them without the frame axis S (``pose_enc``
    [B, 9], ``pose_enc_iters`` [I, B, 9], ``depth`` [B, H, W, 1], ...). The track fields are set only when query
    points were given (``track_conf`` only when the track head predicts confidence).

    It also reads as a mapping by the reference's key names, for code written against the reference's dict:
    ``out["depth"]``, ``"track" in out``, ``out.get("track_conf")``, ``out.keys()``, ``dict(out)``. Fields that
    are None are absent keys. ``to_dict()`` gives a plain (mutable) dict.
    """

    pose_enc: Tensor  # [B, S, 9] camera after the last refinement iteration: t (3), quaternion xyzw (4), fov h, w
    pose_enc_iters: Tensor = field(metadata={_FRAME_AXIS: 2})  # [I, B, S, 9] after each camera-head iteration
    depth: Tensor  # [B, S, H, W, 1] z in the frame's camera, in the scene's (normalised) units
    depth_conf: Tensor  # [B, S, H, W] > 1
    world_points: Tensor  # [B, S, H, W, 3] in the first frame's camera, same units as depth
    world_points_conf: Tensor  # [B, S, H, W] > 1
    track: Tensor | None = None  # [B, S, N, 2] (x, y) pixels of each query point, after the last iteration
    track_vis: Tensor | None = None  # [B, S, N] visibility in (0, 1)
    track_conf: Tensor | None = None  # [B, S, N] confidence in (0, 1)

    def frame(self, index: int) -> Predictions:
        """The predictions of frame ``index`` alone: every field without its frame axis."""
        values = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                values[spec.name] = value.select(spec.metadata.get(_FRAME_AXIS, 1), index)
        return Predictions(**values)

    def element(self, index: int) -> Predictions:
        """Batch element ``index`` alone, as a batch of one (the batch axis sits just before the frame axis)."""
        values = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                values[spec.name] = value.narrow(spec.metadata.get(_FRAME_AXIS, 1) - 1, index, 1)
        return Predictions(**values)

    def to_dict(self) -> dict[str, Tensor]:
        """The fields that are set, by name (the reference's output dict)."""
        return {name: getattr(self, name) for name in self.keys()}

    def keys(self) -> list[str]:
        return [spec.name for spec in dataclasses.fields(self) if getattr(self, spec.name) is not None]

    def values(self) -> list[Tensor]:
        return [getattr(self, name) for name in self.keys()]

    def items(self) -> list[tuple[str, Tensor]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def get(self, key: str, default: Tensor | None = None) -> Tensor | None:
        return getattr(self, key) if key in self else default

    def __getitem__(self, key: str) -> Tensor:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={list(value.shape)}" for name, value in self.items())
        return f"Predictions({shapes})"
