"""Procedural synthetic scenes: textured rooms with boxes and spheres, ray-cast with exact depth and cameras.

Each scene is drawn from its own seed: a room (six inward-facing textured planes), a few textured boxes (turned
about the vertical) and spheres, a directional light, a field of view, and a smooth camera path inside the room
that keeps clear of the objects. Rendering casts one ray per pixel centre (optionally averaging a finer grid for
the colour); depth is the exact z-distance of the first hit, so images, depth, intrinsics and poses agree to
float precision. Shading is Lambertian (view-independent), so a surface point has the same colour in every view.

World frame: y up, metres. Cameras are OpenCV (x right, y down, z forward), poses camera-to-world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PATTERNS = ("checker", "stripes", "waves", "grid")


@dataclass(frozen=True)
class Texture:
    """A procedural pattern over surface coordinates (u, v) in metres, mixing two colours."""

    pattern: str
    colors: np.ndarray  # [2, 3] in [0, 1]
    scale: float  # pattern period, metres
    angle: float  # pattern orientation, radians
    waves: np.ndarray  # [3, 3] (frequency u, frequency v, phase) of a low-contrast modulation

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Texture:
        base = rng.uniform(0.05, 0.95, size=3)
        other = np.clip(base + rng.choice([-1, 1], size=3) * rng.uniform(0.25, 0.6, size=3), 0, 1)
        waves = np.column_stack((rng.uniform(-6, 6, size=(3, 2)), rng.uniform(0, 2 * np.pi, size=3)))
        return cls(
            pattern=str(rng.choice(_PATTERNS)),
            colors=np.stack((base, other)),
            scale=float(rng.uniform(0.15, 0.8)),
            angle=float(rng.uniform(0, np.pi)),
            waves=waves,
        )

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colours [N, 3] at surface coordinates u, v [N]."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        a, b = (u * cos + v * sin) / self.scale, (-u * sin + v * cos) / self.scale
        if self.pattern == "checker":
            mix = (np.floor(a) + np.floor(b)) % 2
        elif self.pattern == "stripes":
            mix = np.floor(a) % 2
        elif self.pattern == "waves":
            mix = 0.5 + 0.5 * np.sin(2 * np.pi * a) * np.cos(2 * np.pi * b)
        else:  # grid: thin lines of the second colour
            mix = ((a % 1 < 0.12) | (b % 1 < 0.12)).astype(np.float64)
        modulation = sum(np.sin(f_u * u + f_v * v + phase) for f_u, f_v, phase in self.waves) / 3
        color = self.colors[0] + mix[:, None] * (self.colors[1] - self.colors[0])
        return np.clip(color * (0.85 + 0.15 * modulation[:, None]), 0, 1)


@dataclass(frozen=True)
class Box:
    center: np.ndarray  # [3]
    half_size: np.ndarray  # [3]
    yaw: float  # rotation about the vertical axis
    texture: Texture


@dataclass(frozen=True)
class Sphere:
    center: np.ndarray
    radius: float
    texture: Texture


@dataclass(frozen=True)
class Hits:
    """Nearest hits of N rays: distance along the ray (inf for none), unit normal, surface (u, v), texture id."""

    t: np.ndarray
    normal: np.ndarray
    uv: np.ndarray
    surface: np.ndarray


class SyntheticScene:
    """A room with objects, a light and a camera path; :meth:`render` draws a view at any size."""

    def __init__(self, rng: np.random.Generator, num_frames: int, max_boxes: int = 6, max_spheres: int = 4) -> None:
        self.room = np.array([rng.uniform(4.0, 8.0), rng.uniform(2.6, 3.6), rng.uniform(4.0, 8.0)])  # x, y, z extents
        self.room_textures = [Texture.sample(rng) for _ in range(6)]  # -x, +x, -y (floor), +y, -z, +z
        self.fov_w = float(np.deg2rad(rng.uniform(50.0, 85.0)))
        light = np.array([rng.uniform(-1, 1), rng.uniform(0.6, 1.5), rng.uniform(-1, 1)])
        self.light = light / np.linalg.norm(light)
        self.ambient = float(rng.uniform(0.35, 0.55))
        self.cam_to_world = _camera_path(rng, self.room, num_frames)
        centres = self.cam_to_world[:, :3, 3]
        boxes = [_sample_box(rng, self.room) for _ in range(int(rng.integers(2, max_boxes + 1)))]
        self.boxes = [b for b in boxes if _clearance(centres, b.center) > np.linalg.norm(b.half_size) + 0.3]
        spheres = [_sample_sphere(rng, self.room) for _ in range(int(rng.integers(1, max_spheres + 1)))]
        self.spheres = [s for s in spheres if _clearance(centres, s.center) > s.radius + 0.3]
        self.textures = [*self.room_textures, *(b.texture for b in self.boxes), *(s.texture for s in self.spheres)]

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """Square pixels, the scene's horizontal field of view, principal point at (W/2, H/2) as VGGT assumes."""
        focal = width / 2 / np.tan(self.fov_w / 2)
        return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])

    def render(
        self, frame: int, width: int, height: int, supersample: int = 1, intrinsics: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image [H, W, 3] uint8 and depth [H, W] float32 of path frame ``frame``.

        supersample: colour averaged over an s x s grid per pixel (anti-aliasing); depth is always the exact value
        at the pixel centre. intrinsics: another camera than :meth:`intrinsics` (e.g. to check a crop).
        """
        if intrinsics is None:
            intrinsics = self.intrinsics(width, height)
        pose = self.cam_to_world[frame]
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        centre_hits, centre_dirs = self._cast(pose, intrinsics, xs.ravel(), ys.ravel())
        depth = centre_hits.t.reshape(height, width)  # directions have camera z = 1, so t is the z-depth
        if supersample <= 1:
            color = self._shade(centre_hits, centre_dirs)
        else:
            offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
            color = np.zeros((height * width, 3))
            for dy in offsets:
                for dx in offsets:
                    hits, dirs = self._cast(pose, intrinsics, xs.ravel() + dx, ys.ravel() + dy)
                    color += self._shade(hits, dirs)
            color /= supersample**2
        image = np.round(color.reshape(height, width, 3) * 255).astype(np.uint8)
        return image, depth.astype(np.float32)

    def _cast(
        self, pose: np.ndarray, intrinsics: np.ndarray, xs: np.ndarray, ys: np.ndarray
    ) -> tuple[Hits, np.ndarray]:
        """Rays through pixels (xs, ys) -> nearest hits and the world directions (camera z component 1)."""
        cam = np.stack(((xs - intrinsics[0, 2]) / intrinsics[0, 0], (ys - intrinsics[1, 2]) / intrinsics[1, 1]), -1)
        cam = np.concatenate((cam, np.ones((len(xs), 1))), axis=-1)
        dirs = cam @ pose[:3, :3].T
        origin = pose[:3, 3]
        best = _room_hits(origin, dirs, self.room)
        for index, box in enumerate(self.boxes):
            best = _nearest(best, _box_hits(origin, dirs, box), 6 + index)
        for index, sphere in enumerate(self.spheres):
            best = _nearest(best, _sphere_hits(origin, dirs, sphere), 6 + len(self.boxes) + index)
        return best, dirs

    def _shade(self, hits: Hits, dirs: np.ndarray) -> np.ndarray:
        color = np.zeros((len(hits.t), 3))
        for surface, texture in enumerate(self.textures):
            where = hits.surface == surface
            if where.any():
                color[where] = texture(hits.uv[where, 0], hits.uv[where, 1])
        # Normals facing away from the viewer are flipped: both sides of a plane are lit alike.
        normal = np.where((np.sum(hits.normal * dirs, -1) > 0)[:, None], -hits.normal, hits.normal)
        lambert = np.clip(normal @ self.light, 0, 1)
        return color * (self.ambient + (1 - self.ambient) * lambert)[:, None]


def _camera_path(rng: np.random.Generator, room: np.ndarray, num_frames: int) -> np.ndarray:
    """Camera-to-world poses [F, 4, 4]: an arc around the room centre (looking inwards) or a walk through it
    (looking ahead, panning), with small height and roll changes."""
    half = room[[0, 2]] / 2
    time = np.linspace(0.0, 1.0, num_frames)
    height = rng.uniform(1.0, 1.9) + 0.15 * np.sin(2 * np.pi * (time * rng.uniform(0.3, 1.0) + rng.uniform()))
    if rng.random() < 0.6:  # orbit around a target near the centre
        radius = half * rng.uniform(0.45, 0.75)
        angle = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * rng.uniform(0.5, 2.0) * time
        ground = np.stack((radius[0] * np.cos(angle), radius[1] * np.sin(angle)), -1)
        target = rng.uniform(-0.3, 0.3, size=2) * half + 0.3 * np.stack((np.sin(3 * time), np.cos(2 * time)), -1)
        target_height = rng.uniform(0.5, 1.3) + np.zeros(num_frames)
    else:  # walk along a line across the room, looking ahead with a slow pan
        start, end = (rng.uniform(-0.6, 0.6, size=2) * half for _ in range(2))
        ground = start + time[:, None] * (end - start)
        heading = np.arctan2(*(end - start)[::-1]) + rng.uniform(-0.6, 0.6) * np.sin(2 * np.pi * time)
        target = ground + 2.0 * np.stack((np.cos(heading), np.sin(heading)), -1)
        target_height = height + rng.uniform(-0.6, 0.2)
    centres = np.stack((ground[:, 0], height, ground[:, 1]), -1)
    targets = np.stack((target[:, 0], target_height, target[:, 1]), -1)
    roll = rng.uniform(-0.08, 0.08) * np.sin(2 * np.pi * time + rng.uniform(0, 2 * np.pi))
    return np.stack([look_at(c, t, r) for c, t, r in zip(centres, targets, roll, strict=True)])


def look_at(centre: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world at ``centre`` looking at ``target`` (world y up), rolled by ``roll`` radians."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cos, sin = np.cos(roll), np.sin(roll)
    right, down = cos * right + sin * down, -sin * right + cos * down
    pose = np.eye(4)
    pose[:3, :3] = np.stack((right, down, forward), axis=1)
    pose[:3, 3] = centre
    return pose


def _sample_box(rng: np.random.Generator, room: np.ndarray) -> Box:
    half_size = rng.uniform(0.15, 0.6, size=3)
    on_floor = rng.random() < 0.7
    y = half_size[1] if on_floor else rng.uniform(half_size[1] + 0.3, room[1] - half_size[1] - 0.2)
    xz = rng.uniform(-0.4, 0.4, size=2) * room[[0, 2]]
    return Box(
        center=np.array([xz[0], y, xz[1]]),
        half_size=half_size,
        yaw=float(rng.uniform(0, np.pi)),
        texture=Texture.sample(rng),
    )


def _sample_sphere(rng: np.random.Generator, room: np.ndarray) -> Sphere:
    radius = float(rng.uniform(0.2, 0.55))
    y = radius if rng.random() < 0.5 else rng.uniform(radius + 0.3, room[1] - radius - 0.2)
    xz = rng.uniform(-0.4, 0.4, size=2) * room[[0, 2]]
    return Sphere(np.array([xz[0], y, xz[1]]), radius, Texture.sample(rng))


def _clearance(centres: np.ndarray, point: np.ndarray) -> float:
    return float(np.min(np.linalg.norm(centres - point, axis=-1)))


def _nearest(best: Hits, other: Hits, surface: int) -> Hits:
    closer = other.t < best.t
    return Hits(
        t=np.where(closer, other.t, best.t),
        normal=np.where(closer[:, None], other.normal, best.normal),
        uv=np.where(closer[:, None], other.uv, best.uv),
        surface=np.where(closer, surface, best.surface),
    )


def _room_hits(origin: np.ndarray, dirs: np.ndarray, room: np.ndarray) -> Hits:
    """Exit points of rays from inside the room box [-x/2, x/2] x [0, y] x [-z/2, z/2]."""
    low, high = np.array([-room[0] / 2, 0.0, -room[2] / 2]), np.array([room[0] / 2, room[1], room[2] / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(dirs > 0, high, low)
        t_axis = np.where(dirs != 0, (bound - origin) / dirs, np.inf)
    axis = np.argmin(t_axis, axis=-1)
    rows = np.arange(len(dirs))
    t = t_axis[rows, axis]
    point = origin + t[:, None] * dirs
    positive = dirs[rows, axis] > 0
    normal = np.zeros_like(dirs)
    normal[rows, axis] = np.where(positive, -1.0, 1.0)
    # Surface coordinates: the two coordinates other than the hit axis.
    others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.take_along_axis(point, others, axis=-1)
    return Hits(t=t, normal=normal, uv=uv, surface=2 * axis + positive)


def _box_hits(origin: np.ndarray, dirs: np.ndarray, box: Box) -> Hits:
    """Slab test in the box frame (turned by ``yaw`` about y)."""
    cos, sin = np.cos(box.yaw), np.sin(box.yaw)
    to_box = np.array([[cos, 0, -sin], [0, 1, 0], [sin, 0, cos]])  # world -> box rotation
    local_origin = to_box @ (origin - box.center)
    local_dirs = dirs @ to_box.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-box.half_size - local_origin) / local_dirs
        t2 = (box.half_size - local_origin) / local_dirs
    t_near_axis = np.minimum(t1, t2)
    t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
    axis = np.nanargmax(t_near_axis, axis=-1)
    rows = np.arange(len(dirs))
    t_near = t_near_axis[rows, axis]
    hit = (t_near <= t_far) & (t_near > 1e-6)
    t = np.where(hit, t_near, np.inf)
    local_normal = np.zeros_like(dirs)
    local_normal[rows, axis] = -np.sign(local_dirs[rows, axis])
    local_point = local_origin + np.where(hit, t_near, 0)[:, None] * local_dirs
    others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.take_along_axis(local_point, others, axis=-1)
    return Hits(t=t, normal=local_normal @ to_box, uv=uv, surface=np.zeros(len(dirs), dtype=np.int64))


def _sphere_hits(origin: np.ndarray, dirs: np.ndarray, sphere: Sphere) -> Hits:
    offset = origin - sphere.center
    a = np.sum(dirs * dirs, -1)
    b = 2 * dirs @ offset
    c = offset @ offset - sphere.radius**2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0))
    t_near = (-b - root) / (2 * a)
    hit = (disc >= 0) & (t_near > 1e-6)
    t = np.where(hit, t_near, np.inf)
    normal = (offset + np.where(hit, t_near, 0)[:, None] * dirs) / sphere.radius
    # Latitude/longitude scaled by the radius: texture periods stay in metres.
    uv = np.stack((np.arctan2(normal[:, 0], normal[:, 2]), np.arccos(np.clip(normal[:, 1], -1, 1))), -1)
    return Hits(t=t, normal=normal, uv=uv * sphere.radius, surface=np.zeros(len(dirs), dtype=np.int64))
