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
  A. the head and residual trunk at latent resolution (receptive field 19
     latent px for the paper generator): layer by layer over row bands with
     a 1-row halo, updating one latent-resolution feature map in place, so
     nothing is recomputed (the map takes 15 bytes per image pixel for
     hific-lo, 3 for hific-small-*);
  B. the upsampling stack and the RGB convolution (a 3-px halo) in 2-D tiles,
     each converted to 8-bit and written straight into the output image.
  When even that map exceeds ``map_budget`` (1 GiB: about 70 megapixels for
  hific-lo), the trunk runs in 2-D tiles with a ``19 + 3`` px halo and each
  tile's upsampling follows at once ("fused"): memory no longer grows with
  the image, at the price of recomputing the halos.

Peak memory is set by ``budget_bytes`` (the largest activation tensor of one
tile, 64 MiB by default), plus the latent map in banded mode.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..image_io import to_uint8
from ..limits import DEFAULT_BUDGET
from ..models.encoder import Encoder
from ..models.generator import Modulation
from ..models.layers import ResidualBlock

Run = Callable[[Callable[[Tensor], Tensor], Tensor], Tensor]

DEFAULT_MAP_BUDGET = 2**30  # bytes for the latent-resolution map of banded synthesis
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
        latent_stride: Downsampling factor of E (``ModelConfig.latent_stride``).
        budget_bytes: Largest float32 activation tensor one tile may need.
        map_budget: Bytes the latent-resolution feature map of the banded
            synthesis may take (default 1 GiB); beyond it synthesis runs
            fused tiles.
    """

    def __init__(
        self,
        encoder: nn.Module,
        generator: nn.Module,
        latent_stride: int,
        budget_bytes: int = DEFAULT_BUDGET,
        map_budget: int = 0,
    ) -> None:
        self.encoder = encoder
        self.generator = generator
        self.latent_stride = latent_stride
        self.budget = budget_bytes
        self.map_budget = map_budget or DEFAULT_MAP_BUDGET
        self.enc_halo = math.ceil(receptive_radius(encoder) / latent_stride)
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
        per_latent_px = self.enc_channels * self.latent_stride**2 * 4
        return _tile_shape(rows, cols, self.enc_halo, self.budget // per_latent_px)

    def trunk_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        """Largest latent area the head + trunk may take in one pass."""
        return _tile_shape(rows, cols, self.trunk_halo, self.budget // (self.trunk_channels * 4))

    def up_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        """Latent tile shape for the upsampling stack."""
        return _tile_shape(rows, cols, self.up_halo, self.budget // (self.up_cost * 4))

    def fused_tile(self, rows: int, cols: int) -> Tuple[int, int]:
        """Latent tile shape for the trunk in fused mode (square: the map is
        too large for full-width bands by definition)."""
        halo = self.trunk_halo + self.up_halo
        side = max(MIN_TILE, math.isqrt(self.budget // (4 * self.trunk_channels)) - 2 * halo)
        return min(rows, side), min(cols, side)

    def needs_tiling(self, rows: int, cols: int) -> bool:
        """Whether an untiled pass over this latent grid would exceed the budget."""
        shapes = (self.analysis_tile(rows, cols), self.trunk_tile(rows, cols), self.up_tile(rows, cols))
        return any(shape != (rows, cols) for shape in shapes)

    # -- transforms -----------------------------------------------------------

    def analysis(self, x: Tensor, run: Run, tile: Tuple[int, int] = (0, 0)) -> Tensor:
        """y = E(x) for a padded image ``x`` [1, 3, H, W] (H, W multiples of
        the latent stride), tile by tile; returns CPU float32."""
        s = self.latent_stride
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

    def _trunk(self, y_hat: Tensor, mod: Modulation) -> Tensor:
        g = self.generator
        h = g.stem(y_hat, mod)
        return h + g.trunk_stage(h, mod)

    def synthesis_mode(self, rows: int, cols: int) -> str:
        """``untiled``, ``banded`` or ``fused`` for a latent grid of ``rows x cols``.

        * banded: the head and each residual block run layer by layer over
          full-width row bands, updating one latent-resolution feature map in
          place (nothing is recomputed); then the upsampling stack runs in
          2-D tiles. Used while that map fits in ``map_budget``.
        * fused: beyond that, the trunk runs in 2-D tiles with a
          ``trunk_halo + up_halo`` halo and each tile's upsampling follows at
          once, so nothing of image size is held but the output; the halos
          cost recomputation.
        """
        if not self.needs_tiling(rows, cols):
            return "untiled"
        if rows * cols * self.trunk_channels * 4 <= self.map_budget:
            return "banded"
        return "fused"

    def _band_rows(self, channels: int, cols: int) -> int:
        return max(MIN_TILE, self.budget // (max(channels, self.trunk_channels) * cols * 4))

    def _banded(self, fn: Callable[[Tensor], Tensor], src: Tensor, run: Run, out: Optional[Tensor] = None) -> Tensor:
        """``fn`` (receptive radius <= 1 px) over full-width row bands of
        ``src``; the result is written into a new map, or added to ``out``."""
        if out is src:
            raise ValueError("_banded cannot write into its own input")
        add = out is not None
        rows, cols = src.shape[-2:]
        for r0, r1, a0, a1 in _spans(rows, self._band_rows(src.shape[1], cols), 1):
            part = run(fn, src[:, :, a0:a1])[:, :, r0 - a0 : r1 - a0]
            if out is None:
                out = part.new_empty((1, part.shape[1], rows, cols)).contiguous(memory_format=torch.channels_last)
            if add:
                out[:, :, r0:r1] += part
            else:
                out[:, :, r0:r1] = part
            del part
        assert out is not None
        return out

    def _residual_in_place(self, i: int, h: Tensor, run: Run, mod: Modulation) -> None:
        """``h += body(h)`` for residual block ``i``, over row bands, in place,
        with a rolling window.

        The body is two radius-1 stages, :meth:`Generator.block_first` and
        :meth:`Generator.block_second`. Band by band: ``first`` is computed
        for the band's rows from rows of ``h`` not yet updated, then ``h`` is
        updated up to one row behind, which needs ``first`` one row ahead.
        Two rows of ``first`` carry over to the next band.
        """
        g = self.generator

        def first(t: Tensor) -> Tensor:
            return g.block_first(i, t, mod)

        def second(t: Tensor) -> Tensor:
            return g.block_second(i, t, mod)

        rows, cols = h.shape[-2:]
        done = 0  # h rows [0, done) are updated
        carry: Optional[Tensor] = None  # first's rows [done - 1, r0), at most 2
        for r0, r1, a0, a1 in _spans(rows, self._band_rows(h.shape[1], cols), 1):
            f = run(first, h[:, :, a0:a1])[:, :, r0 - a0 : r1 - a0]
            f0 = max(0, done - 1)  # first row held in f after the carry
            if carry is not None:
                f = torch.cat([carry, f], dim=2)
            u1 = r1 - 1 if r1 < rows else rows
            s0, s1 = max(0, done - 1), min(rows, u1 + 1)  # rows of first that second needs
            upd = run(second, f[:, :, s0 - f0 : s1 - f0])[:, :, done - s0 : u1 - s0]
            h[:, :, done:u1] += upd
            del upd
            done = u1
            keep = max(0, done - 1)
            carry = f[:, :, keep - f0 :].clone() if done < rows else None
            del f

    def _trunk_banded(self, y_hat: Tensor, run: Run, mod: Modulation) -> Tensor:
        """head + trunk + global skip, layer by layer over one latent-res map."""
        g = self.generator

        def stem(t: Tensor) -> Tensor:
            return g.stem(t, mod)

        h = self._banded(stem, y_hat, run)
        for i in range(len(g.trunk)):
            self._residual_in_place(i, h, run, mod)
        # The global skip adds the head's output again: recomputing it (one
        # 3x3 conv) is cheaper in memory than keeping a second map.
        return self._banded(stem, y_hat, run, out=h)

    def _up_region(
        self, h: Tensor, origin: Tuple[int, int], core: Tuple[int, int, int, int], run: Run, out: np.ndarray,
        mod: Modulation = None,
    ) -> None:
        """Upsample the latent rows/cols ``core`` = (r0, r1, c0, c1) of a
        feature map ``h`` whose top-left is latent ``origin``, into ``out``."""
        s = self.latent_stride
        height, width = out.shape[:2]
        oy, ox = origin
        r0, r1, c0, c1 = core
        rows, cols = h.shape[-2:]
        th, tw = self.up_tile(r1 - r0, c1 - c0)

        def up(t: Tensor) -> Tensor:
            return self.generator.upsample(t, mod)

        for t0, t1, _, _ in _spans(r1 - r0, th, 0):
            if (r0 + t0) * s >= height:
                break
            for u0, u1, _, _ in _spans(c1 - c0, tw, 0):
                if (c0 + u0) * s >= width:
                    break
                # tile rows/cols in h's coordinates, with the halo h holds
                y0, y1 = r0 + t0 - oy, r0 + t1 - oy
                x0, x1 = c0 + u0 - ox, c0 + u1 - ox
                a0, a1 = max(0, y0 - self.up_halo), min(rows, y1 + self.up_halo)
                b0, b1 = max(0, x0 - self.up_halo), min(cols, x1 + self.up_halo)
                img = run(up, h[:, :, a0:a1, b0:b1])
                img = img[0, :, (y0 - a0) * s : (y1 - a0) * s, (x0 - b0) * s : (x1 - b0) * s]
                self._write(out, img, r0 + t0, c0 + u0)

    def _write(self, out: np.ndarray, img: Tensor, r0: int, c0: int) -> None:
        """Put a decoded [3, h, w] tile whose top-left is latent (r0, c0) into ``out``."""
        s = self.latent_stride
        height, width = out.shape[:2]
        y0, x0 = r0 * s, c0 * s
        img = img[:, : height - y0, : width - x0]
        out[y0 : y0 + img.shape[1], x0 : x0 + img.shape[2]] = to_uint8(img.unsqueeze(0))

    def synthesis(self, y_hat: Tensor, run: Run, out: np.ndarray, mode: str = "", mod: Modulation = None) -> np.ndarray:
        """Decode ``y_hat`` [1, C, h, w] into ``out`` (an ``H x W x 3`` uint8
        array, H <= 16h, W <= 16w) tile by tile; returns ``out``.

        ``mode`` forces ``banded`` or ``fused`` (default: :meth:`synthesis_mode`);
        ``mod`` is the generator's modulation for this image
        (:meth:`Generator.modulation`), None for an unconditioned generator.
        """
        rows, cols = y_hat.shape[-2:]
        mode = mode or self.synthesis_mode(rows, cols)

        def trunk(t: Tensor) -> Tensor:
            return self._trunk(t, mod)

        if mode != "fused":
            h = self._trunk_banded(y_hat, run, mod) if mode == "banded" else run(trunk, y_hat)
            self._up_region(h, (0, 0), (0, rows, 0, cols), run, out, mod)
            return out
        halo = self.trunk_halo + self.up_halo
        th, tw = self.fused_tile(rows, cols)
        for r0, r1, a0, a1 in _spans(rows, th, halo):
            for c0, c1, b0, b1 in _spans(cols, tw, halo):
                h = run(trunk, y_hat[:, :, a0:a1, b0:b1])
                # keep the core plus the up-stack's halo
                ka0, ka1 = max(a0, r0 - self.up_halo), min(a1, r1 + self.up_halo)
                kb0, kb1 = max(b0, c0 - self.up_halo), min(b1, c1 + self.up_halo)
                h = h[:, :, ka0 - a0 : ka1 - a0, kb0 - b0 : kb1 - b0]
                self._up_region(h, (ka0, kb0), (r0, r1, c0, c1), run, out, mod)
                del h
        return out


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1].out_channels
