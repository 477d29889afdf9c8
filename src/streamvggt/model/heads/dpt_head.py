"""Dense prediction (DPT) head: tokens of four trunk layers -> a full-resolution map per frame."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def inverse_log(y: Tensor) -> Tensor:
    """sign(y) * (exp|y| - 1): the point head's output activation."""
    return torch.sign(y) * torch.expm1(y.abs())


_VALUE_ACTIVATIONS = {"inv_log": inverse_log, "exp": torch.exp, "linear": lambda y: y}


def uv_sincos_embedding(channels: int, grid_h: int, grid_w: int, aspect: float, device: torch.device) -> Tensor:
    """Sin/cos embedding [channels, grid_h, grid_w] of normalised image-plane coordinates.

    The grid spans ±aspect/√(aspect²+1) horizontally and ±1/√(aspect²+1) vertically at pixel centres; x gets the
    first half of the channels and y the second, each as [sin, cos] with frequencies 100^(-k/(channels/4)).
    """
    diagonal = (aspect**2 + 1.0) ** 0.5
    span_x, span_y = aspect / diagonal, 1.0 / diagonal
    xs = torch.linspace(-span_x * (grid_w - 1) / grid_w, span_x * (grid_w - 1) / grid_w, grid_w, device=device)
    ys = torch.linspace(-span_y * (grid_h - 1) / grid_h, span_y * (grid_h - 1) / grid_h, grid_h, device=device)
    quarter = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)

    def embed(coords: Tensor) -> Tensor:  # [n] -> [n, channels/2]
        angles = coords.double()[:, None] * omega
        return torch.cat((angles.sin(), angles.cos()), dim=-1).float()

    ex = embed(xs)[None, :, :].expand(grid_h, -1, -1)
    ey = embed(ys)[:, None, :].expand(-1, grid_w, -1)
    return torch.cat((ex, ey), dim=-1).permute(2, 0, 1)


def scaled_pos_embed(
    channels: int, grid_h: int, grid_w: int, aspect: float, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """``0.1 * uv_sincos_embedding(...)`` in ``dtype`` [channels, grid_h, grid_w]: what the DPT head adds."""
    return 0.1 * uv_sincos_embedding(channels, grid_h, grid_w, aspect, device).to(dtype)


# Eager forwards make each embedding once per size and dtype. The full-resolution one is 128 x H x W: building it
# (a concatenation, a cast and a scale over 26M values at 518x392) took longer per frame than adding it. Twelve
# entries hold the five sizes a DPT head uses per frame size, in two dtypes; no gradient is held (a constant).
# Compiled graphs call scaled_pos_embed itself, which inductor folds into constants.
_cached_scaled_pos_embed = functools.lru_cache(maxsize=12)(scaled_pos_embed)


class ResidualConvUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, added to relu(x).

    The skip carries relu(x), not x: the reference applies an in-place ReLU to its input before the skip
    connection, and the official weights were trained with that behaviour.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    """RefineNet-style fusion: (+ refined skip) -> residual unit -> bilinear resize -> 1x1 conv."""

    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _contiguous_state(module: nn.Module, state: dict, prefix: str, metadata: dict) -> None:
    """State dicts hold the usual contiguous layout: safetensors refuses channels-last tensors, and checkpoints
    should not depend on a runtime layout choice. Parameters themselves (``keep_vars=True``) are left as they are."""
    for name, tensor in state.items():
        if name.startswith(prefix) and not isinstance(tensor, nn.Parameter) and not tensor.is_contiguous():
            state[name] = tensor.contiguous()


def _channels_last_after_load(module: DPTHead, incompatible_keys: object) -> None:
    module.use_channels_last()


class DPTHead(nn.Module):
    """Reads the patch tokens of four trunk layers, fuses them coarse-to-fine and predicts per-pixel outputs.

    Outputs (``feature_only=False``): values [B, S, H, W, output_dim-1] and confidence [B, S, H, W] (1 + exp).
    With ``feature_only`` it returns features [B, S, features, H/down_ratio, W/down_ratio] (the track head).
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        if activation not in _VALUE_ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}'")
        if conf_activation != "expp1":
            raise ValueError(f"unknown confidence activation '{conf_activation}'")
        if len(out_channels) != 4 or len(intermediate_layer_idx) != 4:
            raise ValueError("the DPT head reads exactly four layers")
        self.patch_size = patch_size
        self.activation = activation
        self.use_pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.intermediate_layer_idx = list(intermediate_layer_idx)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        # One patch grid becomes a pyramid: the four levels are resampled x4, x2, x1 and x1/2.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for index, channels in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{index}_rn", nn.Conv2d(channels, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FusionBlock(features)
        self.scratch.refinenet2 = FusionBlock(features)
        self.scratch.refinenet3 = FusionBlock(features)
        self.scratch.refinenet4 = FusionBlock(features, has_skip=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, output_dim, 1)
            )
        # A hook for the runtime (streamvggt.runtime.regional_compile): when set, frames decode through it, a compiled
        # DPTHead._decode shared by every head (called with the head first). Not saved with the weights; None or
        # False: eager.
        self.compiled_regions: Callable[..., Tensor | tuple[Tensor, Tensor]] | None = None
        self.use_channels_last()
        self.register_state_dict_post_hook(_contiguous_state)
        self.register_load_state_dict_post_hook(_channels_last_after_load)

    def forward(
        self,
        tokens: Mapping[int, Tensor],
        image_size: tuple[int, int],
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """tokens: {layer: [B, S, P, 2C]}; frames are decoded ``frames_chunk_size`` at a time to bound memory."""
        frames = tokens[self.intermediate_layer_idx[0]].shape[1]
        step = frames_chunk_size if frames_chunk_size else frames
        compiled = self.compiled_regions and not torch.compiler.is_compiling()  # a compiled step traces plain code
        decode = functools.partial(self.compiled_regions, self) if compiled else self._decode
        chunks = [
            decode(tokens, image_size, patch_start_idx, start, min(start + step, frames))
            for start in range(0, frames, step)
        ]
        if self.feature_only:
            return torch.cat(chunks, dim=1)
        return torch.cat([c[0] for c in chunks], dim=1), torch.cat([c[1] for c in chunks], dim=1)

    def use_channels_last(self) -> None:
        """Store conv weights channels-last (so activations follow): identical results, faster CPU convolutions.

        Done at construction and after every ``load_state_dict`` (``assign=True`` replaces the parameters by the
        checkpoint's contiguous tensors). Never switched lazily in forward: DDP records parameter layouts when it
        wraps the model.
        """
        self.to(memory_format=torch.channels_last)

    def _decode(
        self, tokens: Mapping[int, Tensor], image_size: tuple[int, int], patch_start_idx: int, start: int, end: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        height, width = image_size
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        pyramid = []
        for level, layer in enumerate(self.intermediate_layer_idx):
            x = tokens[layer][:, start:end, patch_start_idx:]
            batch, frames = x.shape[:2]
            x = self.norm(x.reshape(batch * frames, grid_h * grid_w, -1))
            x = x.transpose(1, 2).reshape(batch * frames, -1, grid_h, grid_w)
            x = x.contiguous(memory_format=torch.channels_last)
            x = self.projects[level](x)
            if self.use_pos_embed:
                x = self._add_pos_embed(x, width / height)
            pyramid.append(self.resize_layers[level](x))

        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i}_rn")(x) for i, x in enumerate(pyramid, start=1))
        x = s.refinenet4(l4, size=l3.shape[-2:])
        x = s.refinenet3(x, l3, size=l2.shape[-2:])
        x = s.refinenet2(x, l2, size=l1.shape[-2:])
        x = s.refinenet1(x, l1)
        x = s.output_conv1(x)
        out_size = (grid_h * self.patch_size // self.down_ratio, grid_w * self.patch_size // self.down_ratio)
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=True)
        if self.use_pos_embed:
            x = self._add_pos_embed(x, width / height)
        if self.feature_only:
            return x.reshape(batch, frames, *x.shape[1:])
        hidden = s.output_conv2[:-1](x)
        # The last (1x1) convolution and the activations in fp32 even under autocast: exp() of a bf16 value is off
        # by up to 0.4%.
        with torch.autocast(x.device.type, enabled=False):
            x = s.output_conv2[-1](hidden.float()).permute(0, 2, 3, 1)  # [B*S, H, W, output_dim]
        values = _VALUE_ACTIVATIONS[self.activation](x[..., :-1])
        confidence = 1 + x[..., -1].exp()
        return values.reshape(batch, frames, *values.shape[1:]), confidence.reshape(batch, frames, *x.shape[1:3])

    @staticmethod
    def _add_pos_embed(x: Tensor, aspect: float) -> Tensor:
        make = scaled_pos_embed if torch.compiler.is_compiling() else _cached_scaled_pos_embed
        return x + make(x.shape[1], x.shape[-2], x.shape[-1], aspect, x.device, x.dtype)
