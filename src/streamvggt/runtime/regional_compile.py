"""Compiling the model's repeated parts once ("regional compilation", ``compile="regions"``).

Compiling a whole streaming step (:mod:`streamvggt.runtime.compiled_step`) inlines all 72 blocks of the 1.2B model
into one graph, which takes minutes on a small CPU, and needs a bounded cache to keep its shapes static. Regional
compilation compiles the transformer block and the DPT head's decoder instead: a handful of graphs (the patch
embed's block, the trunk's block split around its cache, the camera head's, one per dense head) that every
instance shares, because the module's weights are graph inputs. It works with every cache policy, the full cache
included, since the cache update and the causal attention stay eager between the compiled regions. On CPU it fuses
the elementwise work around the GEMMs and convolutions (LayerNorm, RoPE, LayerScale and residuals, casts, bias
and GELU, ReLU and skip additions); benchmarks/README.md has its gain per frame and its first-run compile time
(which torch caches on disk).

The model holds no compiled code of its own: each :class:`Block` and :class:`DPTHead` has an inert
``compiled_regions`` hook, None until :func:`compile_regions` sets it to a function made here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from streamvggt.layers import Block, KVCacheLayer
from streamvggt.model.heads.dpt_head import DPTHead
from streamvggt.runtime.precision import is_quantised

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
        modules = [module for module in modules if not any(is_quantised(child) for child in module.modules())]
    for module in modules:
        if not enabled:
            module.compiled_regions = None
        elif isinstance(module, Block):
            module.compiled_regions = compiled_block_forward
        else:
            module.compiled_regions = _compiled_graphs().decode
    log.info("%d blocks and heads %s", len(modules), "run compiled" if enabled else "run eagerly")
    return len(modules)


def regions_compiled(model: nn.Module) -> bool:
    """Whether any block or head of ``model`` runs through compiled regions (they compile at their first call)."""
    return any(getattr(module, "compiled_regions", False) for module in model.modules())


class _Graphs(NamedTuple):
    whole: Callable[..., Tensor]
    inputs: Callable[..., tuple[Tensor, Tensor, Tensor]]
    finish: Callable[..., Tensor]
    decode: Callable[..., Tensor | tuple[Tensor, Tensor]]


@functools.cache
def _compiled_graphs() -> _Graphs:
    """The torch.compile'd functions, made once and shared by every module: the module is an argument, so its
    weights are graph inputs, the trunk's 48 blocks and the patch embed's 24 reuse the same few graphs instead of
    compiling one each, and heads of one configuration share a decoder graph (the depth and point heads differ in
    outputs: one graph each)."""
    return _Graphs(
        whole=torch.compile(Block.forward_uncached, fullgraph=True),
        inputs=torch.compile(Block.attention_inputs, fullgraph=True),
        finish=torch.compile(Block.finish, fullgraph=True),
        decode=torch.compile(DPTHead._decode, fullgraph=True),
    )


def compiled_block_forward(
    block: Block,
    x: Tensor,
    rope_tables: tuple[Tensor, Tensor] | None,
    frame_tokens: int | None,
    kv_cache: KVCacheLayer | None,
) -> Tensor:
    """Block.forward through the compiled regions. A cache's update (Python control, lengths that grow) and the
    causal attention stay eager between the two regions; without them the whole block is one graph."""
    graphs = _compiled_graphs()
    if kv_cache is None and frame_tokens is None:
        return graphs.whole(block, x, rope_tables)
    q, k, v = graphs.inputs(block, x, rope_tables)
    return graphs.finish(block, x, block.attn.attend_with_cache(q, k, v, frame_tokens, kv_cache))


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
