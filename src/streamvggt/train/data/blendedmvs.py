"""BlendedMVS as processed by CUT3R: rendered multi-view stereo scenes, up to scale, clips along overlap chains.

Layout: ``ROOT/new_overlap.h5`` has one group per scene (the 24-character scene folder name) with ``basenames``
(byte strings, e.g. ``b"00000012"``), a sparse overlap-score matrix as ``indices`` [2, N] (rows, columns),
``values`` [N] and the attribute ``shape``. View ``b`` is ``ROOT/{scene}/{b}.jpg``, ``{b}.exr`` (float depth,
0 = unknown) and ``{b}.npz`` (``intrinsics`` 3x3, ``R_cam2world`` 3x3, ``t_cam2world`` 3, OpenCV).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamvggt.extras import require
from streamvggt.train.data.base import Frame, MultiViewDataset
from streamvggt.train.data.layouts import _require, read_rgb
from streamvggt.train.data.view_files import checked_frame, read_camera, read_exr_depth

OVERLAP_FILE = "new_overlap.h5"
# Steps of one chain search before it is given up (the search is exponential in the worst case).
SEARCH_BUDGET = 20_000


class OverlapGraph:
    """Which views of a scene overlap: edges where the score exceeds ``threshold``, weighted by the excess."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, size: int, threshold: float) -> None:
        self.neighbours: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * size
        self.weights: list[np.ndarray] = [np.zeros(0)] * size
        # In float32, as the stored scores: a score written as 0.2 is then not above a threshold of 0.2.
        excess = np.asarray(scores, dtype=np.float32) - np.float32(threshold)
        keep = excess > 0
        rows, cols, excess = rows[keep], cols[keep], excess[keep]
        order = np.lexsort((cols, rows))
        rows, cols, excess = rows[order], cols[order], excess[order]
        for node in np.unique(rows):
            span = slice(*np.searchsorted(rows, [node, node + 1]))
            self.neighbours[node], self.weights[node] = cols[span].astype(np.int64), excess[span].astype(np.float64)

    def __len__(self) -> int:
        return len(self.neighbours)

    def reaches(self, start: int, count: int) -> bool:
        """Whether ``count`` views are reachable from ``start`` (a cheap necessary condition for a chain)."""
        seen, stack = {start}, [start]
        while stack and len(seen) < count:
            fresh = [n for n in self.neighbours[stack.pop()].tolist() if n not in seen]
            seen.update(fresh)
            stack.extend(fresh)
        return len(seen) >= count

    def chain(self, start: int, length: int, rng: np.random.Generator) -> tuple[list[int] | None, bool]:
        """A path of ``length`` distinct views from ``start``, each overlapping the previous one, found by a
        depth-first search that tries neighbours in random order weighted by overlap.

        Returns (path or None, whether a None is final: the whole search space was tried).
        """
        path, on_path = [start], {start}
        pending = [iter(self._shuffled(start, rng))]
        for _ in range(SEARCH_BUDGET):
            if len(path) == length:
                return path, True
            if not pending:
                return None, True
            node = next(pending[-1], None)
            if node is None:
                pending.pop()
                on_path.discard(path.pop())
            elif node not in on_path:
                path.append(node)
                on_path.add(node)
                pending.append(iter(self._shuffled(node, rng)))
        return (path, True) if len(path) == length else (None, False)

    def _shuffled(self, node: int, rng: np.random.Generator) -> list[int]:
        neighbours, weights = self.neighbours[node], self.weights[node]
        if len(neighbours) == 0:
            return []
        return rng.choice(neighbours, len(neighbours), replace=False, p=weights / weights.sum()).tolist()


class BlendedMVSDataset(MultiViewDataset):
    """A clip per view of every scene: a chain of ``num_views`` distinct views starting there, consecutive ones
    overlapping (score above 0.2), shuffled as a collection (``is_video`` False).

    A view with no such chain hands the clip to the next views of its scene (in a random direction), and a scene
    with none to random other views, as in the reference. Each start's search draws from a generator seeded by
    the clip and the start, so a clip does not depend on which starts a worker already found dead. Deviations:
    a search gives up after 20,000 steps (the reference's can run for exponential time), and when a whole
    scene fails the other scenes are tried in a size-weighted random order, so a clip fails only when no
    scene has a chain.
    The reference ignores ``split`` (the folder holds the training scenes); here ``"train"`` or None is accepted.
    """

    name = "blendedmvs"
    is_metric = False

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str | None = "train",
        overlap_threshold: float = 0.2,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        if split not in (None, "train"):
            raise ValueError(f"BlendedMVS has no '{split}' split: its processed folder is the training set")
        self.root = Path(root)
        self.index_file = _require(self.root / OVERLAP_FILE, "BlendedMVS overlap index")
        self.scenes: list[tuple[str, list[str], OverlapGraph]] = []
        h5py = require("h5py", "train", f"reading BlendedMVS's {OVERLAP_FILE}")
        with h5py.File(self.index_file, "r") as h5:
            for scene, group in sorted(h5.items()):
                names = [b.decode("utf-8") if isinstance(b, bytes) else str(b) for b in group["basenames"][:]]
                indices, values = np.asarray(group["indices"][:]), np.asarray(group["values"][:])
                if indices.ndim != 2 or indices.shape[0] != 2 or values.shape != indices.shape[1:]:
                    raise ValueError(
                        f"{self.index_file}: scene {scene} has indices {indices.shape} and values {values.shape}, "
                        "expected [2, N] and [N]"
                    )
                if indices.size and not 0 <= indices.min() <= indices.max() < len(names):
                    raise ValueError(
                        f"{self.index_file}: scene {scene} has overlap indices beyond its {len(names)} views"
                    )
                graph = OverlapGraph(
                    rows=indices[0], cols=indices[1], scores=values, size=len(names), threshold=overlap_threshold
                )
                self.scenes.append((scene, names, graph))
        self.anchors = [(s, i) for s, (_, names, _) in enumerate(self.scenes) for i in range(len(names))]
        if not self.anchors:
            raise ValueError(f"{self.index_file}: no scene with views")
        self._dead: list[set[int]] = [set() for _ in self.scenes]  # starts known to have no chain

    def __len__(self) -> int:
        return len(self.anchors)

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        seed = int(rng.integers(2**63))
        fallback = np.random.default_rng([seed, 0])
        for scene, start in self._starts_to_try(index, fallback):
            path = self._chain_in_scene(scene, start, seed, direction=int(fallback.choice([-1, 1])))
            if path is not None:
                return [(scene, view) for view in path], False
        raise ValueError(f"{self.index_file}: found no chain of {self.num_views} overlapping views")

    def _starts_to_try(self, index: int, rng: np.random.Generator) -> Iterator[tuple[int, int]]:
        """The clip's own view, then a random view of each scene, scenes in a random order weighted by their
        size (the reference redraws a random view of the dataset until one works)."""
        yield self.anchors[index]
        sizes = np.array([len(names) for _, names, _ in self.scenes], dtype=np.float64)
        for scene in rng.choice(len(sizes), np.count_nonzero(sizes), replace=False, p=sizes / sizes.sum()).tolist():
            yield scene, int(rng.integers(sizes[scene]))

    def _chain_in_scene(self, scene: int, start: int, seed: int, direction: int) -> list[int] | None:
        graph, dead = self.scenes[scene][2], self._dead[scene]
        for offset in range(len(graph)):
            candidate = (start + direction * offset) % len(graph)
            if candidate in dead:
                continue
            if graph.reaches(candidate, self.num_views):
                path, final = graph.chain(candidate, self.num_views, np.random.default_rng([seed, scene, candidate]))
                if path is not None:
                    return path
            else:
                final = True
            if final:
                dead.add(candidate)
        return None

    def load_frame(self, handle: tuple[int, int]) -> Frame:
        scene, view = handle
        name, names, _ = self.scenes[scene]
        stem = self.root / name / names[view]
        camera = Path(f"{stem}.npz")
        intrinsics, rotation, translation = read_camera(camera, "intrinsics", "R_cam2world", "t_cam2world")
        if rotation.shape != (3, 3) or translation.shape != (3,):
            raise ValueError(
                f"{camera}: R_cam2world must be 3x3 and t_cam2world 3, got {rotation.shape}, {translation.shape}"
            )
        cam_to_world = np.eye(4)
        cam_to_world[:3, :3], cam_to_world[:3, 3] = rotation, translation
        depth = read_exr_depth(Path(f"{stem}.exr"))
        return checked_frame(read_rgb(Path(f"{stem}.jpg")), depth, intrinsics, cam_to_world, camera)
