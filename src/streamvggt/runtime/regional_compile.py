"""Compiling the model's repeated parts once ("regional compilation", ``compile="regions"``).

Compiling a whole streaming step (:mod:`streamvggt.runtime.compiled_step`) inlines all 72 blocks of the 1.2B model into
one graph, which takes minutes on a small CPU, and needs a bounded cache to keep its shapes static. Regional
compilation compiles the transformer block and the DPT head's decoder instead: a handful of graphs (the patch
embed's block, the trunk's block split around its cache, the camera head's, one per dense head) that every
instance shares, because the module's weights are graph inputs. It works with every cache policy, the full cache
included, since the cache update and the causal attention stay eager between the compiled regions. On CPU it fuses
the elementwise work around the GEMMs and convolutions (LayerNorm, RoPE, LayerScale and residuals, casts, bias
and GELU, ReLU and skip additions): issue #14 measured 0.1-0.2 s less per 1.2B bf16 frame on a 2-core Xeon
(benchmarks/README.md), after a first-run compile of 20-40 s that torch caches on disk.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

from streamvggt.layers import Block
from streamvggt.model.heads.dpt_head import DPTHead

log = logging.getLogger(__name__)


def compile_regions(model: nn.Module, enabled: bool = True) -> int:
    """Switch every :class:`Block` and :class:`DPTHead` in ``model`` to (``enabled``) or from their compiled
    regions; returns how many modules were switched.

    The switch is the model's, not a session's: every later forward and stream uses it. Graphs are compiled at the
    first forward of each kind (a warm-up frame does it at load) and again for a new frame or batch size. Blocks
    of an int8 trunk stay eager (dynamo cannot trace quantised Linear layers); its heads still compile.
    Raises RuntimeError with one line when torch.compile cannot work here (on CPU inductor needs a C++ compiler).
    """
    if enabled:
        check_compiler()
    modules = [module for module in model.modules() if isinstance(module, Block | DPTHead)]
    if enabled:
        # int8 trunks (precision.quantize_trunk) hold quantised Linear layers, which dynamo cannot trace: eager.
        modules = [module for module in modules if not _quantised(module)]
    for module in modules:
        module.compiled_regions = enabled
    log.info("%d blocks and heads %s", len(modules), "run compiled" if enabled else "run eagerly")
    return len(modules)


def regions_compiled(model: nn.Module) -> bool:
    """Whether any block or head of ``model`` runs through compiled regions (they compile at their first call)."""
    return any(getattr(module, "compiled_regions", False) for module in model.modules())


def _quantised(module: nn.Module) -> bool:
    return any(type(child).__module__.startswith("torch.ao.nn.quantized") for child in module.modules())


@functools.cache
def check_compiler() -> None:
    """Compile and run a two-operation function once; a failure becomes one RuntimeError line."""

    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 2

    try:
        torch.compile(probe, fullgraph=True)(torch.ones(8))
    except Exception as error:  # inductor's failures have no common type (missing compiler, build errors)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"torch.compile does not work here, so regions cannot be compiled: {first_line}") from None
