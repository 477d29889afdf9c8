"""Can the bundled architecture learn relative camera rotation on this CPU budget? (the diagnosis behind issue #6)

The easiest relative-pose task there is: two views from the same point of a procedural scene, the second turned
by a random yaw in [-D, D] and pitch in [-D/2, D/2] degrees about the camera centre (pure rotation: the image
content shifts by up to ~2 patches at D = 20, no parallax, no scale ambiguity). The aggregator and camera head are
trained with the camera loss alone (the training pipeline's Huber loss over refinement iterations) on such pairs
from the 2,000 training scenes, starting from the bundled weights or from scratch (``--init cnn``: a plain CNN
over the stacked pair instead, as a control of the task itself), and every ``--eval-every`` steps the
relative-rotation error on 32 pairs from held-out scenes is printed beside that of predicting no rotation.
Writes ``camera_pair_learnability-<init>.json`` (run one process per ``--init`` to use two cores).

    python benchmarks/camera_pair_learnability.py --init bundled --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from streamvggt import load_model
from streamvggt.evaluate.metrics import relative_pose_errors
from streamvggt.geometry import pose_encoding_to_extri_intri
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.scenes.procedural_room import SyntheticScene
from streamvggt.train.data.base import relative_extrinsics
from streamvggt.train.data.sampling import item_rng
from streamvggt.train.losses import camera_loss
from streamvggt.train.targets import ground_truth

SIZE = (112, 84)  # (W, H): the bundled model's training resolution
TRAIN_SCENES = 2000
HELD_OUT_PAIRS = 32
HELD_OUT_SCENE_SEED = 7_100_000  # outside the training (0..) and evaluation (7_000_002..) seeds


def rotation_pair(scene_keys: tuple[int, int], rng: np.random.Generator, max_deg: float) -> dict[str, torch.Tensor]:
    """Two views [2, 3, H, W] from one camera centre of a scene's path, the second turned about that centre.

    scene_keys: the scene's generator keys, as the training set (seed 0, index) and the evaluation (seed, 0) draw them.
    """
    scene = SyntheticScene(item_rng(*scene_keys), 32)
    first = scene.cam_to_world[int(rng.integers(32))]
    turn = Rotation.from_euler("YX", [rng.uniform(-max_deg, max_deg), rng.uniform(-max_deg, max_deg) / 2], True)
    second = first.copy()
    second[:3, :3] = first[:3, :3] @ turn.as_matrix()  # turned in the camera's own frame
    scene.cam_to_world = np.stack((first, second))  # the pair is this throwaway scene's whole path
    rendered = [scene.render(i, *SIZE) for i in range(2)]
    intrinsics = scene.intrinsics(*SIZE).astype(np.float32)
    depth = torch.from_numpy(np.stack([d for _, d in rendered]))
    return {
        "images": torch.from_numpy(np.stack([im for im, _ in rendered])).permute(0, 3, 1, 2).float() / 255,
        "depth": depth,
        "valid_mask": depth > 0,
        "intrinsics": torch.from_numpy(np.stack((intrinsics, intrinsics))),
        "extrinsics": torch.from_numpy(relative_extrinsics([first, second]).astype(np.float32)),
    }


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class PairCNN(torch.nn.Module):
    """Control: a plain CNN over the two images stacked as 6 channels, regressing both pose encodings [B, 2, 9].

    Convolutions over stacked frames see a local shift directly, so it shows whether the task is learnable from
    this much data at this resolution, independently of the transformer trunk.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        layers, channels = [], 6
        for out in (width // 2, width, 2 * width, 2 * width):
            layers += [torch.nn.Conv2d(channels, out, 3, stride=2, padding=1), torch.nn.GELU()]
            channels = out
        self.features = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Sequential(
            torch.nn.Linear(channels, channels), torch.nn.GELU(), torch.nn.Linear(channels, 18)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images.flatten(1, 2))).unflatten(1, (2, 9))


def predict_poses(model: StreamVGGT | PairCNN, images: torch.Tensor) -> list[torch.Tensor]:
    """Pose encodings [B, 2, 9] per refinement iteration: the camera head on the last aggregator layer (the dense
    heads are skipped), or the control CNN's single estimate."""
    if isinstance(model, PairCNN):
        return [model(images)]
    last = model.config.depth - 1
    tokens = model.aggregator(images, (last,))
    return model.camera_head(tokens[last][:, :, 0].float())


def rotation_errors(pred_w2c: torch.Tensor, gt_w2c: torch.Tensor) -> np.ndarray:
    """Relative rotation error (deg) of each pair [B, 2, 3|4, 4]: the evaluation's RRA over its one frame pair."""
    return np.array([relative_pose_errors(pred, gt)[0][0] for pred, gt in zip(pred_w2c, gt_w2c, strict=True)])


@torch.no_grad()
def held_out_errors(model: StreamVGGT | PairCNN, pairs: dict[str, torch.Tensor]) -> float:
    """Mean angle (deg) between predicted and true relative rotation over the held-out pairs."""
    model.eval()
    encoding = predict_poses(model, pairs["images"])[-1]
    model.train()
    extrinsics, _ = pose_encoding_to_extri_intri(encoding.double(), pairs["images"].shape[-2:])
    return float(rotation_errors(extrinsics, pairs["extrinsics"]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", choices=("bundled", "scratch", "cnn"), default="bundled")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--max-deg", type=float, default=20.0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.init == "cnn":
        model = PairCNN()
        params = list(model.parameters())
    else:
        model = load_model(device="cpu").float()
        if args.init == "scratch":
            model = StreamVGGT(model.config)
        params = [*model.aggregator.parameters(), *model.camera_head.parameters()]
    model.train()
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    rng = np.random.default_rng(args.seed)
    held_out_rng = np.random.default_rng(12345)
    held_out = collate(
        [rotation_pair((HELD_OUT_SCENE_SEED + i, 0), held_out_rng, args.max_deg) for i in range(HELD_OUT_PAIRS)]
    )
    no_rotation = torch.eye(4).expand_as(held_out["extrinsics"])
    identity_error = float(rotation_errors(no_rotation, held_out["extrinsics"]).mean())

    rows = [{"step": 0, "train_loss": None, "held_out_deg": held_out_errors(model, held_out)}]
    print(f"# {args.init} init, pure-rotation pairs up to {args.max_deg} deg, batch {args.batch}, lr {args.lr}")
    print(f"# predicting no rotation: {identity_error:.2f} deg on {HELD_OUT_PAIRS} held-out pairs")
    print("| step | train camera loss (last interval) | held-out rotation error (deg) | seconds |")
    print("|---:|---:|---:|---:|")
    print(f"| 0 | - | {rows[0]['held_out_deg']:.2f} | 0 |", flush=True)
    started, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        warmup = min(1.0, step / 30)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * warmup * 0.5 * (1 + math.cos(math.pi * step / args.steps)) + 1e-6
        scenes = rng.integers(0, TRAIN_SCENES, args.batch)
        batch = collate([rotation_pair((0, int(s)), rng, args.max_deg) for s in scenes])
        target = ground_truth(batch, "first_view").pose_encoding
        loss = camera_loss(torch.stack(predict_poses(model, batch["images"])), target, gamma=0.6)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            row = {
                "step": step,
                "train_loss": float(np.mean(losses[-args.eval_every :])),
                "held_out_deg": held_out_errors(model, held_out),
                "seconds": time.perf_counter() - started,
            }
            rows.append(row)
            print(
                f"| {step} | {row['train_loss']:.4f} | {row['held_out_deg']:.2f} | {row['seconds']:.0f} |", flush=True
            )
    report = {
        "init": args.init,
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"image_size": list(SIZE)},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "identity_held_out_deg": identity_error,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"camera_pair_learnability-{args.init}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=1))
    temporary.replace(path)


if __name__ == "__main__":
    main()
