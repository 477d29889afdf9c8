"""The training loop on Accelerate: one process on a CPU, several CPU processes (gloo), or many GPUs (DDP).

One optimizer step = ``accumulation_steps`` micro-batches of ``batch_size`` clips on every process. The loop is
deterministic given the config: data items are keyed by (seed, epoch, index), query points by (seed, step,
rank, micro-batch), so a run resumed from a checkpoint computes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from streamvggt.model.execution import ExecutionPrecision
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.runtime.precision import execution_precision, resolve_precision
from streamvggt.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_temporary,
    save_checkpoint,
)
from streamvggt.train.config import ModelSection, TrainConfig, save_config
from streamvggt.train.criteria import DistillationLoss, SupervisedLoss
from streamvggt.train.data.mix import DatasetMix, build_reader
from streamvggt.train.data.sampling import BatchPlan
from streamvggt.train.optim import build_optimizer, enable_activation_checkpointing, freeze
from streamvggt.train.plot import plot_loss_curve
from streamvggt.train.targets import sample_query_points
from streamvggt.weights import load_model, save_pretrained

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"


def build_mix(config: TrainConfig) -> DatasetMix:
    """The configured datasets with their per-epoch sample counts."""
    data = config.data
    if not data.datasets:
        raise ValueError("data.datasets is empty")
    readers = [
        build_reader(
            entry.type,
            root=entry.root,
            split=entry.split,
            num_views=data.num_views,
            aug_crop=data.aug_crop,
            color_jitter=data.color_jitter,
            **entry.options,
        )
        for entry in data.datasets
    ]
    return DatasetMix(readers, [e.samples for e in data.datasets], data.resolutions, seed=config.run.seed)


def build_models(section: ModelSection, distill: bool, seed: int) -> tuple[StreamVGGT, StreamVGGT | None]:
    """The student (on the CPU, in train mode) and, for distillation, the frozen full-attention teacher, both with
    their weights in fp32 as loaded (training chooses its autocast itself; nothing is converted)."""
    architecture = section.architecture()
    if section.init is not None:
        student = load_model(section.init, preset=architecture, device="cpu", precision="fp32")
    else:
        torch.manual_seed(seed)  # the same initial weights on every process and in every run
        student = StreamVGGT(architecture)
    teacher = None
    if distill:
        teacher = load_model(section.teacher, preset=section.architecture(causal=False), device="cpu", precision="fp32")
        teacher.requires_grad_(False)
    return student.train(), teacher


def training_precision(config: TrainConfig, device: torch.device) -> str:
    """The mode ``run.mixed_precision`` means on ``device`` (:func:`streamvggt.runtime.precision.resolve_precision`
    without a trunk to measure): ``auto`` is bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU
    (bf16 autocast on a CPU is slower than fp32 and changes the numerics for nothing); ``no`` is fp32."""
    wanted = config.run.mixed_precision
    return resolve_precision(device, "fp32" if wanted == "no" else wanted)


@dataclass
class StepResult:
    loss: float
    terms: dict[str, float]
    grad_norm: float
    lr: float


class Trainer:
    """Holds the run's objects; :meth:`fit` trains from the current step to the end of the schedule."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        config.validate()
        self.config = config
        run = config.run
        self.output = Path(run.output_dir)
        if run.threads is not None:
            torch.set_num_threads(run.threads)
        cpu = run.cpu or not torch.cuda.is_available()
        device = torch.device("cpu" if cpu else "cuda")
        precision = training_precision(config, device)
        self.accelerator = Accelerator(cpu=cpu, mixed_precision="no" if precision == "fp32" else precision)
        acc = self.accelerator
        self.rank, self.world = acc.process_index, acc.num_processes

        self._setup_data()
        student, teacher, optimizer = self._setup_model(
            execution_precision(config.run.mixed_precision, precision, device)
        )
        self.step = 0
        state = self._restore(student, resume)
        self.model, self.optimizer = acc.prepare(student, optimizer)
        if state is not None:
            self.optimizer.load_state_dict(state.optimizer)
            self.scheduler.load_state_dict(state.scheduler)
        self.teacher = None if teacher is None else teacher.to(acc.device).eval()
        if acc.is_main_process:
            self.output.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output / "config.yaml")
            self._truncate_metrics()
        acc.wait_for_everyone()

    # ------------------------------------------------------------------------------------------------ set-up

    def _setup_data(self) -> None:
        config = self.config
        self.mix = build_mix(config)
        weights = config.data.resolution_weights or [1.0] * len(config.data.resolutions)
        self.plan = BatchPlan(
            num_items=len(self.mix),
            batch_size=config.data.batch_size,
            resolution_weights=weights,
            seed=config.run.seed,
            rank=self.rank,
            world_size=self.world,
        )
        self.accumulation = config.optim.accumulation_steps
        self.steps_per_epoch = len(self.plan) // self.accumulation
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"an epoch of {len(self.mix)} clips is too short for one step of {self.world} process(es) x "
                f"{config.data.batch_size} clips x {self.accumulation} micro-batches: raise the sample counts"
            )
        self.total_steps = max(1, math.ceil(config.optim.epochs * self.steps_per_epoch))
        self.last_step = min(self.total_steps, config.run.max_steps or self.total_steps)

    def _setup_model(
        self, execution: ExecutionPrecision
    ) -> tuple[StreamVGGT, StreamVGGT | None, torch.optim.Optimizer]:
        """The student (frozen parts, layouts, precision), the teacher, the optimizer and ``self.scheduler``.

        Both models run in ``execution`` (the trunk under its autocast, with fp32 weights: nothing is converted
        for training)."""
        config = self.config
        distill = config.loss.kind == "distill"
        self.criterion = DistillationLoss(config.loss) if distill else SupervisedLoss(config.loss)
        student, teacher = build_models(config.model, distill, config.run.seed)
        set_seed(config.run.seed + self.rank)  # as the reference: seed + process index, after the shared init
        frozen = freeze(student, config.model.freeze)
        if not self.criterion.uses_tracks:
            # Nothing would train it, and DDP requires every trainable parameter to get a gradient.
            frozen += freeze(student, ["track_head"])
        if config.model.activation_checkpointing:
            enable_activation_checkpointing(student)
        student.execution = execution
        if teacher is not None:
            teacher.execution = execution
        trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
        logger.info("student: %d trainable parameters, %d frozen", trainable, frozen)
        optimizer, self.scheduler = build_optimizer(student, config.optim, self.steps_per_epoch)
        return student, teacher, optimizer

    def _restore(self, student: StreamVGGT, resume: bool):
        existing = list_checkpoints(self.output)
        if not resume:
            if existing:
                raise FileExistsError(
                    f"{self.output} already holds checkpoints: pass --resume to continue, or choose another "
                    "run.output_dir"
                )
            return None
        if self.accelerator.is_main_process:
            remove_temporary(self.output)
        folder = latest_checkpoint(self.output)
        if folder is None:
            logger.info("--resume: no checkpoint in %s, starting from step 0", self.output)
            return None
        state = load_checkpoint(folder, student, self.rank, self.world)
        self.step = state.step
        logger.info("resumed from %s at step %d", folder, self.step)
        return state

    def _truncate_metrics(self) -> None:
        """Drop records of steps after the resumed one: they are recomputed, identically."""
        path = self.output / METRICS
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= self.step]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(kept)

    # ------------------------------------------------------------------------------------------------- data

    def batches(self) -> Iterator[dict]:
        """Micro-batches from the current step on, across epochs."""
        per_epoch = self.steps_per_epoch * self.accumulation
        epoch, offset = divmod(self.step, self.steps_per_epoch)
        start = offset * self.accumulation
        pin = self.accelerator.device.type == "cuda"
        while True:
            keys = list(self.plan.epoch(epoch, start))[: per_epoch - start]
            loader = DataLoader(self.mix, batch_sampler=keys, num_workers=self.config.data.num_workers, pin_memory=pin)
            yield from loader
            epoch, start = epoch + 1, 0

    def _to_device(self, batch: dict) -> dict:
        device = self.accelerator.device
        return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def _query_generator(self, micro: int) -> torch.Generator:
        seed = np.random.SeedSequence([self.config.run.seed, self.step, self.rank, micro]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------------------------------------------- steps

    def train_step(self, micro_batches: list[dict]) -> StepResult:
        """One optimizer step over ``micro_batches`` (this process's share); returns process-averaged numbers."""
        acc, model = self.accelerator, self.model
        lr = self.optimizer.param_groups[0]["lr"]
        sums: dict[str, Tensor] = {}
        for index, batch in enumerate(micro_batches):
            batch = self._to_device(batch)
            queries = None
            if self.criterion.uses_tracks:
                valid = batch["valid_mask"][:, 0]
                queries = sample_query_points(valid, self.config.loss.query_points, self._query_generator(index))
                batch["query_points"] = queries
            last = index == len(micro_batches) - 1
            target = None
            if self.teacher is not None:
                with torch.no_grad():
                    target = self.teacher(batch["images"], query_points=queries)
            # DDP averages gradients across processes only on the last micro-batch of a step.
            with contextlib.nullcontext() if last else acc.no_sync(model):
                pred = model(batch["images"], query_points=queries)
                with torch.autocast(acc.device.type, enabled=False):  # losses in fp32
                    if target is not None:
                        loss, terms = self.criterion(pred, target, batch)
                    else:
                        loss, terms = self.criterion(pred, batch)
                acc.backward(loss / len(micro_batches))
            for name, value in {"loss": loss, **{f"loss/{k}": v for k, v in terms.items()}}.items():
                sums[name] = sums.get(name, 0) + value.detach().float() / len(micro_batches)
        names = list(sums)
        averaged = acc.reduce(torch.stack([sums[n] for n in names]), reduction="mean").tolist()
        if not math.isfinite(averaged[0]):
            raise FloatingPointError(
                f"non-finite loss at step {self.step + 1}: {dict(zip(names, averaged, strict=True))}"
            )
        clip = self.config.optim.grad_clip
        grad_norm = acc.clip_grad_norm_(model.parameters(), clip if clip is not None else math.inf)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        values = dict(zip(names, averaged, strict=True))
        return StepResult(
            loss=values.pop("loss"),
            terms=values,
            grad_norm=float(grad_norm),
            lr=lr,
        )

    def fit(self) -> Path:
        """Train to the end of the schedule (or ``run.max_steps``), checkpointing on the way; returns the exported
        model folder."""
        acc, run = self.accelerator, self.config.run
        clips_per_step = self.config.data.batch_size * self.accumulation * self.world
        logger.info(
            "training steps %d..%d (%d per epoch, %d clips per step) on %d process(es), %s, precision %s",
            self.step + 1,
            self.last_step,
            self.steps_per_epoch,
            clips_per_step,
            self.world,
            acc.device,
            acc.mixed_precision,
        )
        writer = self._writer() if acc.is_main_process else None
        progress = tqdm(
            total=self.last_step,
            initial=self.step,
            disable=not (acc.is_main_process and run.progress),
            dynamic_ncols=True,
        )
        batches = self.batches()
        tick = time.perf_counter()
        try:
            while self.step < self.last_step:
                micro = [next(batches) for _ in range(self.accumulation)]
                result = self.train_step(micro)
                self.step += 1
                seconds, tick = time.perf_counter() - tick, time.perf_counter()  # data loading included
                if acc.is_main_process:
                    self._log(result, clips_per_step / seconds, writer)
                    progress.update(1)
                    progress.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}")
                if self.step % run.save_every == 0 or self.step == self.last_step:
                    save_checkpoint(
                        acc,
                        acc.unwrap_model(self.model),
                        self.optimizer,
                        self.scheduler,
                        self.step,
                        self.output,
                        run.keep_checkpoints,
                    )
                    tick = time.perf_counter()  # throughput is training, not checkpoint writing
        finally:
            progress.close()
            if writer is not None:
                writer.close()
        return self._finish()

    def _finish(self) -> Path:
        acc = self.accelerator
        folder = self.output / "model"
        if acc.is_main_process:
            save_pretrained(acc.unwrap_model(self.model), folder)
            if self.config.run.plot and (self.output / METRICS).exists():
                png = plot_loss_curve(self.output / METRICS, self.output / "loss_curve.png")
                logger.info("loss curve: %s", png)
            logger.info("exported the trained model to %s", folder)
        acc.wait_for_everyone()
        return folder

    # ----------------------------------------------------------------------------------------------- logging

    def _writer(self):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events of steps after a resumed checkpoint, which are about to be logged again.
        return SummaryWriter(str(self.output / "tensorboard"), purge_step=self.step + 1 if self.step else None)

    def _log(self, result: StepResult, samples_per_s: float, writer) -> None:
        record = {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "loss": result.loss,
            **result.terms,
            "lr": result.lr,
            "grad_norm": result.grad_norm,
            "samples_per_s": samples_per_s,
        }
        with open(self.output / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.step % self.config.run.log_every == 0 or self.step == self.last_step:
            for name, value in record.items():
                if name not in ("step", "epoch"):
                    writer.add_scalar(name if name.startswith("loss") else f"train/{name}", value, self.step)
            writer.flush()


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train as configured (resuming from the latest checkpoint if asked); returns the exported model folder."""
    return Trainer(config, resume=resume).fit()
