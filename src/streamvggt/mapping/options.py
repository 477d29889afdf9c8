"""The map's options, with the defaults a 20-minute walk-through needs (see docs/long_videos.md)."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class MapOptions:
    """Keyframe selection, revisit detection, loop acceptance and pose-graph settings.

    Distances are relative to the keyframe's median depth (the stream's units are arbitrary); angles in degrees.
    """

    # Keyframes: a new one when the camera turned or moved this much since the last one.
    keyframe_rotation_deg: float = 10.0
    keyframe_translation: float = 0.15  # x median depth
    points_per_keyframe: int = 2000
    # Revisit candidates: only keyframes older than the stream's cache window (frames it still attends to) and the
    # exclusion gap (frames), with descriptor cosine similarity above the threshold, on `confirm` consecutive
    # keyframes whose candidates lie within `confirm_spread` keyframes of each other.
    cache_window: int = 0
    exclusion_gap: int = 90
    similarity_threshold: float = 0.55
    confirm: int = 2
    confirm_spread: int = 3
    # Verification: keyframes around each side fed to the predictor (with the keyframe itself); at most 48 frames.
    verify_neighbours: int = 1
    inlier_threshold: float = 0.05  # relative 3D distance for an inlier
    min_inlier_fraction: float = 0.6
    max_residual: float = 0.03  # inliers' RMS relative distance
    max_scale_change: float = 1.5  # loop's relative scale vs the odometry's, either way
    max_loop_distance: float = 0.5  # x median depth: a revisit returns to the same place
    max_loop_angle_deg: float = 30.0
    # The loop must agree with the odometry up to the drift the stream can have accumulated in between: this
    # fraction of the path length travelled (plus 0.25 median depths); look-alike places fail it.
    drift_fraction: float = 0.15
    max_drift_deg: float = 30.0
    loop_cooldown: int = 0  # keyframes without verification after an accepted loop (fewer predictor calls)
    # Pose graph: standard deviations of odometry and loop edges (radians, x median depth, log scale); loop edges
    # have a Cauchy kernel of `loop_kernel` sigmas.
    odometry_sigmas: tuple[float, float, float] = (0.01, 0.02, 0.01)
    loop_sigmas: tuple[float, float, float] = (0.01, 0.02, 0.01)
    loop_kernel: float = 3.0
    optimise_iterations: int = 50
    optimise_seconds: float = 1.0
    # Re-anchoring: restart the stream every N frames (0: never) with the last `replay` keyframes replayed.
    reanchor_every: int = 0
    replay: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"map option {spec.name} must be >= 0, got {value}")
        if self.points_per_keyframe < 3:
            raise ValueError(f"points_per_keyframe must be >= 3, got {self.points_per_keyframe}")
        if self.confirm < 1:
            raise ValueError(f"confirm must be >= 1, got {self.confirm}")
        if self.max_scale_change < 1:
            raise ValueError(f"max_scale_change must be >= 1, got {self.max_scale_change}")
        if 2 * self.verify_neighbours + 1 + self.verify_neighbours + 1 > 48:
            raise ValueError(f"verify_neighbours={self.verify_neighbours} needs more than 48 frames per predictor call")
