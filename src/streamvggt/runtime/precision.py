"""Precision: the one place a mode is chosen (:func:`resolve_precision`) and a model converted for it.

:func:`apply_precision` resolves a requested mode for a device, converts the model's weights for it and attaches
the record (:class:`~streamvggt.model.execution.ExecutionPrecision`) as ``model.execution``, which the offline
forward, the streaming session and the compiled step read. ``load_model(..., precision=...)`` calls it; a model
built directly keeps the default record (fp32) and computes exactly in its parameters' dtype. Training resolves
its autocast mode with :func:`resolve_precision` too.

Modes:

- ``fp32``: everything in float32.
- ``bf16``: the trunk's Linear weights stored in bfloat16 and the trunk run under bf16 autocast; heads in fp32.
  Storing the weights in bf16 halves their memory and saves autocast re-casting 1.2B weights on every step.
- ``int8``: the trunk's and the patch embed's Linear layers replaced by dynamically quantised int8 ones
  (``torch.ao.quantization.quantize_dynamic``: int8 weights per output channel, activations quantised per call).
- ``fp16``: fp16 autocast (kept for GPUs; no CPU speed-up).

``auto`` on CPU (:func:`choose_cpu_precision`): fp32 for trunks narrower than :data:`MIN_WIDTH` (their GEMMs take
milliseconds, so exact fp32 results cost little: the bundled model and the test presets) and where the CPU has no
vector bf16 (``AVX2`` and below: bf16 autocast is emulated there, slower than fp32);
otherwise the fastest of fp32 and the :data:`ACCURATE_CPU_MODES` on one trunk block of the model's width over a
frame's tokens, measured once per machine and cached (delete ``cpu_precision.json`` in :func:`cache_dir` to
measure again). A whole block, not one GEMM: int8 speeds up the Linear layers only, while bf16 also halves the
attention's and elementwise work, so a lone GEMM can rank the modes the other way round from a frame. A reduced
mode must be :data:`MIN_SPEEDUP` times faster than fp32 to be chosen. benchmarks/README.md has the measurements
behind these choices.

``auto`` on CUDA is bf16 where the GPU supports it, else fp16 (the reference's choice): the trunk under autocast,
the weights and the heads in fp32. Elsewhere (MPS) fp32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from streamvggt.config import ModelConfig
from streamvggt.io.atomic import atomic_output
from streamvggt.model.execution import ExecutionPrecision

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
MODES = ("fp32", "bf16", "fp16", "int8")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Modes within the accuracy targets against fp32 on trained weights (depth relative error <= 1%, pose-encoding
# error <= 1e-3; benchmarks/cpu_precision.py checks them, benchmarks/README.md has the figures). Only these are
# chosen by auto.
ACCURATE_CPU_MODES = ("bf16", "int8")
# torch.backends.cpu.get_cpu_capability() values with vector bf16 instructions possible (AVX-512 BF16, AMX);
# "AVX512" alone does not prove them (Skylake has none), which the micro-benchmark settles.
BF16_CAPABLE = ("AVX512",)
MIN_SPEEDUP = 1.25
MIN_WIDTH = 512
CACHE_ENV = "STREAMVGGT_CACHE_DIR"


def resolve_precision(device: torch.device, precision: str = "auto", dim: int | None = None, tokens: int = 1) -> str:
    """The concrete mode (``fp32``, ``bf16``, ``fp16`` or ``int8``) that ``precision`` means on ``device``.

    ``auto``: bf16 on CUDA GPUs that support it, fp16 on older ones; on CPU the fastest mode whose accuracy holds
    on this CPU for a trunk of width ``dim`` on ``tokens``-token frames (:func:`choose_cpu_precision`), or fp32
    when ``dim`` is not given (training: nothing is converted there, and CPU autocast only changes the numerics);
    fp32 elsewhere. ValueError with one line for an unknown mode or int8 off the CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only, not on {device.type}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and dim is not None:
        return choose_cpu_precision(dim, tokens)
    return "fp32"


def resolve_model_precision(config: ModelConfig, precision: str, device: torch.device) -> str:
    """:func:`resolve_precision` for the trunk of ``config``: its width, on square frames of its image size (a
    camera token, the register tokens and the patches)."""
    tokens = 1 + config.num_register_tokens + (config.img_size // config.patch_size) ** 2
    return resolve_precision(device, precision, config.embed_dim, tokens)


def execution_precision(requested: str, resolved: str, device: torch.device) -> ExecutionPrecision:
    """The record of mode ``resolved`` (asked for as ``requested``) on ``device``: the trunk under bf16/fp16
    autocast for those modes; the depth and point heads' convolutions in bf16 only on a CPU in bf16 (where it pays
    off, within the accuracy targets); int8 and fp32 without autocast."""
    if resolved not in MODES:
        raise ValueError(f"unknown resolved precision '{resolved}'; choose one of {', '.join(MODES)}")
    dense = torch.bfloat16 if device.type == "cpu" and resolved == "bf16" else None
    return ExecutionPrecision(requested, resolved, _AUTOCAST.get(resolved), dense)


def apply_precision(
    model: nn.Module, requested: str = "auto", device: torch.device | None = None, resolved: str | None = None
) -> ExecutionPrecision:
    """Resolve ``requested`` for ``model`` on ``device`` (default: its parameters'), convert its weights for that
    mode and set ``model.execution`` to the record, which it returns. ``resolved``: the mode already resolved
    (skips a second resolution).

    On CPU, bf16 stores the aggregator's Linear weights in bf16 (half the memory, no re-cast per step) and int8
    quantises them; both are one-way and for inference (ValueError: load the model again for another mode, or
    call ``model.eval()`` first). Other modes and devices keep the weights and use autocast alone.
    """
    device = device if device is not None else next(model.parameters()).device
    mode = resolved if resolved is not None else resolve_model_precision(model.config, requested, device)
    converted = converted_for(model)
    wanted = mode if device.type == "cpu" and mode in ("bf16", "int8") else "fp32"
    if converted != wanted and converted != "fp32":
        raise ValueError(
            f"the trunk's weights were converted for precision '{converted}'; load the model again to run '{mode}'"
        )
    if converted != wanted:
        if model.training:
            raise ValueError(f"precision '{mode}' converts weights for inference: call model.eval() first")
        count = cast_trunk_linears(model, torch.bfloat16) if mode == "bf16" else quantize_trunk(model)
        log.info("trunk converted for %s: %d Linear layers", mode, count)
    model.execution = execution_precision(requested, mode, device)
    return model.execution


def converted_for(model: nn.Module) -> str:
    """What the trunk's weights were converted for: ``int8`` (quantised Linear layers), ``bf16`` (bf16 Linear
    weights) or ``fp32`` (as built or loaded)."""
    if any(is_quantised(module) for module in model.aggregator.modules()):
        return "int8"
    if any(linear.weight.dtype == torch.bfloat16 for _, _, linear in trunk_linears(model)):
        return "bf16"
    return "fp32"


def is_quantised(module: nn.Module) -> bool:
    """Whether ``module`` itself is one of torch's quantised layers (an int8 trunk's Linear: :func:`quantize_trunk`)."""
    return type(module).__module__.startswith("torch.ao.nn.quantized")


def cpu_capability() -> str:
    """The vector instruction set torch dispatches to on this CPU ("DEFAULT", "AVX2", "AVX512", ...)."""
    return torch.backends.cpu.get_cpu_capability()


def choose_cpu_precision(dim: int, tokens: int) -> str:
    """The CPU mode ``auto`` runs for a trunk of width ``dim`` on frames of ``tokens`` tokens (see module doc)."""
    if dim < MIN_WIDTH:
        return "fp32"
    capability = cpu_capability()
    if not capability.startswith(BF16_CAPABLE):
        log.debug("CPU capability %s: no vector bf16, fp32 chosen", capability)
        return "fp32"
    timings = block_timings(dim, tokens)
    fastest = min(ACCURATE_CPU_MODES, key=lambda mode: timings.get(mode, float("inf")), default="fp32")
    chosen = fastest if timings["fp32"] >= MIN_SPEEDUP * timings.get(fastest, float("inf")) else "fp32"
    log.info("CPU %s, trunk block of %d x %d ms %s: %s chosen", capability, tokens, dim, _ms(timings), chosen)
    return chosen


def block_timings(dim: int, tokens: int) -> dict[str, float]:
    """Median seconds of one trunk block on ``tokens`` tokens of width ``dim`` in fp32, bf16 and int8, measured
    once per machine, torch version, thread count and shape, and cached in ``cache_dir()/cpu_precision.json``."""
    key = f"block|{platform.processor() or platform.machine()}|{cpu_capability()}|torch {torch.__version__}|"
    key += f"threads {torch.get_num_threads()}|{tokens}x{dim}"
    path = cache_dir() / "cpu_precision.json"
    stored = _read_json(path)
    if key in stored:
        return stored[key]
    timings = measure_blocks(dim, tokens)
    stored[key] = timings
    with contextlib.suppress(OSError):  # a read-only home only costs the measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    return timings


@torch.no_grad()
def measure_blocks(dim: int, tokens: int, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one trunk block (qk-norm attention and MLP, heads of width 64 as in every VGGT preset) on
    [1, tokens, dim] fp32 inputs, as each mode runs it."""
    from streamvggt.layers import Block  # the trunk's own block; layers sit below this module

    x = torch.randn(1, tokens, dim)
    blocks = {mode: Block(dim, max(1, dim // 64), qk_norm=True).eval() for mode in ("fp32", "bf16", "int8")}
    for linear in (m for m in blocks["bf16"].modules() if type(m) is nn.Linear):
        linear.to(torch.bfloat16)
    blocks["int8"] = quantize_linears(blocks["int8"])

    def under_bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            blocks["bf16"](x)

    runs: dict[str, Callable[[], object]] = {
        "fp32": lambda: blocks["fp32"](x),
        "bf16": under_bf16,
        "int8": lambda: blocks["int8"](x),
    }
    return {mode: _median_seconds(run, repeats) for mode, run in runs.items()}


def cache_dir() -> Path:
    """Where per-machine measurements live: ``$STREAMVGGT_CACHE_DIR``, else ``~/.cache/streamvggt``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "streamvggt"


def trunk_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, Linear) for every Linear of the aggregator (trunk and patch embed)."""
    found = []
    for parent in model.aggregator.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                found.append((parent, name, child))
    return found


def cast_trunk_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the trunk's Linear weights and biases in ``dtype`` (in place, one layer at a time); returns the count.

    Works on a model on the meta device too, so a checkpoint can then be loaded straight into ``dtype``.
    """
    linears = trunk_linears(model)
    for _, _, linear in linears:
        linear.to(dtype)
    return len(linears)


def quantize_linears(module: nn.Module) -> nn.Module:
    """``module`` with its Linear layers dynamically quantised to int8 (weights per output channel).

    ``torch.ao.quantization.quantize_dynamic`` is the implementation torch ships (fbgemm on x86, VNNI where the CPU
    has it), with no extra dependency. torchao's CPU int8 path (``torch._int_mm``) is not faster where it matters:
    on the CPUs where its GEMM wins, bf16 wins as well and auto takes bf16 (benchmarks/README.md).
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    # Per-channel weight scales: the trunk's output channels differ in range by an order of magnitude.
    with warnings.catch_warnings():  # torch marks the eager quantisation API deprecated; it is still the one shipped
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def quantize_trunk(model: nn.Module) -> int:
    """Replace the aggregator's Linear layers by int8 dynamic ones, one layer at a time; returns the count."""
    linears = trunk_linears(model)
    for parent, name, linear in linears:
        setattr(parent, name, quantize_linears(nn.Sequential(linear))[0])
    for module in model.aggregator.modules():
        if getattr(module, "compiled_regions", False):
            module.compiled_regions = False  # compile="regions": dynamo cannot trace quantised Linear layers
    return len(linears)


def _median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # first call creates the kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ms(timings: dict[str, float]) -> str:
    return ", ".join(f"{mode} {1e3 * s:.2f}" for mode, s in timings.items())
