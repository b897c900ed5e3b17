"""Tiled analysis and synthesis: bounded memory whatever the image size.

Every layer of E and G is local (convolutions, ChannelNorm over channels,
ReLU, nearest upsampling, residual adds), so an output pixel depends only on
inputs within the network's receptive-field radius. A tile computed with a
halo at least that wide therefore equals the same region of an untiled pass,
up to float rounding; tiles are cut at multiples of the 16-px latent grid so
the strided convolutions keep their phase, and tiles that touch the image
border see the same (reflect) padding as the whole image would.

* Analysis: 2-D latent tiles, each encoded from its image region plus a halo.
* Synthesis, in two phases, because G's cost sits at two resolutions:
  A. the head and residual trunk at latent resolution (wide receptive field,
     19 latent px for the paper generator) in tiles as large as the memory
     budget allows, written into one latent-resolution feature map;
  B. the upsampling stack and the RGB convolution (a 3-px halo) in 2-D tiles,
     each converted to 8-bit and written straight into the output image.

Peak memory is set by ``budget_bytes`` (the largest activation tensor of one
tile) plus the latent-resolution maps, not by the image size.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Iterator, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..models.encoder import Encoder
from ..models.layers import ResidualBlock

Run = Callable[[Callable[[Tensor], Tensor], Tensor], Tensor]

DEFAULT_BUDGET = 160 * 2**20  # bytes for the largest activation tensor of one tile
MIN_TILE = 4  # latent px


def receptive_radius(module: nn.Module) -> Fraction:
    """How far (in input pixels) an output pixel of ``module`` can see.

    Walks Sequentials and residual blocks in order. A convolution adds
    ``kernel // 2`` pixels at the current resolution; a transposed
    convolution or a nearest upsampling followed by a convolution reaches
    ``ceil((kernel // 2) / factor)`` pixels of the coarser grid, because of
    the integer division that maps fine pixels to coarse ones.
    """
    radius = Fraction(0)
    scale = Fraction(1)  # size of the current pixel in input pixels
    pending_up = 1

    def walk(m: nn.Module) -> None:
        nonlocal radius, scale, pending_up
        if isinstance(m, ResidualBlock):
            walk(m.body)
        elif isinstance(m, Encoder):
            walk(m.net)
        elif isinstance(m, nn.Sequential):
            for child in m:
                walk(child)
        elif isinstance(m, nn.Conv2d):
            reach = (m.kernel_size[0] // 2) * m.dilation[0]
            if pending_up > 1:
                radius += math.ceil(Fraction(reach, pending_up)) * scale * pending_up
                pending_up = 1
            else:
                radius += reach * scale
            scale *= m.stride[0]
        elif isinstance(m, nn.ConvTranspose2d):
            radius += math.ceil(Fraction(m.kernel_size[0] // 2, m.stride[0])) * scale
            scale /= m.stride[0]
        elif isinstance(m, nn.Upsample):
            factor = int(m.scale_factor)
            scale /= factor
            pending_up *= factor
        elif len(list(m.children())) == 0:
            pass  # pointwise: ChannelNorm, ReLU, ...
        else:
            raise TypeError(f"receptive_radius does not know {type(m).__name__}")

    walk(module)
    return radius


def _spans(size: int, tile: int, halo: int) -> Iterator[Tuple[int, int, int, int]]:
    """``(core0, core1, in0, in1)`` for tiles of ``tile`` over ``size`` with a halo."""
    for c0 in range(0, size, tile):
        c1 = min(size, c0 + tile)
        yield c0, c1, max(0, c0 - halo), min(size, c1 + halo)


def _tile_shape(rows: int, cols: int, halo: int, pixels: int) -> Tuple[int, int]:
    """The largest tile (in units of the tiled grid) whose haloed area fits in
    ``pixels``, preferring full-width bands, at least MIN_TILE a side."""
    if rows * cols <= pixels:
        return rows, cols
    if cols * (2 * halo + MIN_TILE) <= pixels:
        return max(MIN_TILE, min(rows, pixels // cols - 2 * halo)), cols
    side = max(MIN_TILE, math.isqrt(pixels) - 2 * halo)
    return min(rows, side), min(cols, side)


class Tiler:
    """Tiled E and G for one model.

    Args:
        encoder: The model's ``g_a``.
        generator: The model's ``g_s`` (``head``, ``trunk``, ``up``, ``tail``).
        stride: Latent downsampling factor of E (16).
        budget_bytes: Largest float32 activation tensor one tile may need.
    """

    def __init__(self, encoder: nn.Module, generator: nn.Module, stride: int, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.encoder = encoder
        self.generator = generator
        self.stride = stride
        self.budget = budget_bytes
        self.enc_halo = math.ceil(receptive_radius(encoder) / stride)
        self.trunk_halo = math.ceil(receptive_radius(nn.Sequential(generator.head, generator.trunk)))
        self.up_halo = math.ceil(receptive_radius(nn.Sequential(generator.up, generator.tail)))
        convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
        self.enc_channels = convs[0].out_channels  # widest full-resolution map
        self.trunk_channels = _out_channels(generator.head)
        ups = [m for m in generator.up.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        # channels x area factor of each upsampling stage's output, relative to a latent pixel
        self.up_cost = max(m.out_channels * 4 ** (i + 1) for i, m in enumerate(ups)) if ups else 1

    # -- planning -----------------------------------------------------------

    def analysis_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        """Latent tile shape for E on a latent grid of ``rows x cols``."""
        per_latent_px = self.enc_channels * self.stride**2 * 4
        return _tile_shape(rows, cols, self.enc_halo, self.budget // per_latent_px)

    def trunk_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        return _tile_shape(rows, cols, self.trunk_halo, self.budget // (self.trunk_channels * 4))

    def up_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        return _tile_shape(rows, cols, self.up_halo, self.budget // (self.up_cost * 4))

    def needs_tiling(self, rows: int, cols: int) -> bool:
        """Whether an untiled pass over this latent grid would exceed the budget."""
        shapes = (self.analysis_tile(rows, cols), self.trunk_tile(rows, cols), self.up_tile(rows, cols))
        return any(shape != (rows, cols) for shape in shapes)

    # -- transforms -----------------------------------------------------------

    def analysis(self, x: Tensor, run: Run, tile: Tuple[int, int] = (0, 0)) -> Tensor:
        """y = E(x) for a padded image ``x`` [1, 3, H, W] (H, W multiples of the
        stride), tile by tile; returns CPU float32."""
        s = self.stride
        rows, cols = x.shape[-2] // s, x.shape[-1] // s
        th, tw = tile if tile[0] else self.analysis_tile(rows, cols)
        y = None
        for r0, r1, a0, a1 in _spans(rows, th, self.enc_halo):
            for c0, c1, b0, b1 in _spans(cols, tw, self.enc_halo):
                part = run(self.encoder, x[:, :, a0 * s : a1 * s, b0 * s : b1 * s]).float().cpu()
                if y is None:
                    y = torch.empty(1, part.shape[1], rows, cols)
                y[:, :, r0:r1, c0:c1] = part[:, :, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
        assert y is not None
        return y

    def _trunk(self, h: Tensor) -> Tensor:
        g = self.generator
        h = g.head(h)
        return h + g.trunk(h)

    def _up(self, h: Tensor) -> Tensor:
        g = self.generator
        return g.tail(g.up(h)) + 0.5

    def synthesis(
        self,
        y_hat: Tensor,
        run: Run,
        out: np.ndarray,
        trunk_tile: Tuple[int, int] = (0, 0),
        up_tile: Tuple[int, int] = (0, 0),
    ) -> np.ndarray:
        """Decode ``y_hat`` [1, C, h, w] into ``out`` (an ``H x W x 3`` uint8
        array, H <= 16h, W <= 16w) tile by tile; returns ``out``."""
        rows, cols = y_hat.shape[-2:]
        th, tw = trunk_tile if trunk_tile[0] else self.trunk_tile(rows, cols)
        h = None
        for r0, r1, a0, a1 in _spans(rows, th, self.trunk_halo):
            for c0, c1, b0, b1 in _spans(cols, tw, self.trunk_halo):
                part = run(self._trunk, y_hat[:, :, a0:a1, b0:b1])
                if (r1 - r0, c1 - c0) == (rows, cols):
                    h = part
                    continue
                if h is None:
                    h = part.new_empty(1, part.shape[1], rows, cols).contiguous(memory_format=torch.channels_last)
                h[:, :, r0:r1, c0:c1] = part[:, :, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
                del part
        assert h is not None
        s = self.stride
        height, width = out.shape[:2]
        th, tw = up_tile if up_tile[0] else self.up_tile(rows, cols)
        for r0, r1, a0, a1 in _spans(rows, th, self.up_halo):
            if r0 * s >= height:
                break
            for c0, c1, b0, b1 in _spans(cols, tw, self.up_halo):
                if c0 * s >= width:
                    break
                img = run(self._up, h[:, :, a0:a1, b0:b1])
                img = img[0, :, (r0 - a0) * s : (r1 - a0) * s, (c0 - b0) * s : (c1 - b0) * s]
                y1, x1 = min(height, r1 * s), min(width, c1 * s)
                img = img[:, : y1 - r0 * s, : x1 - c0 * s]
                out[r0 * s : y1, c0 * s : x1] = to_uint8_hwc(img)
        return out


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1].out_channels


def to_uint8_hwc(img: Tensor) -> np.ndarray:
    """[3, H, W] float in [0, 1] (any device/dtype) -> H x W x 3 uint8."""
    return img.float().clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
