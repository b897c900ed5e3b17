#!/usr/bin/env python3
"""Generate the photo-like test images in ``tests/data/photos`` (CC0; see README.md).

Each image is a small procedural scene: smooth gradients, fractal textures,
hard edges, soft shading and a little sensor noise, so the codec, the
classical baselines and the metrics see photo statistics without any licence
question. Only numpy's legacy ``RandomState`` (whose streams are frozen) and
Pillow's PNG writer are used; rerunning the script rewrites the same files.

Usage::

    python tests/data/make_photos.py            # writes tests/data/photos/*.png
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "photos"
Array = np.ndarray


# --------------------------------------------------------------------------- building blocks


def value_noise(h: int, w: int, cells: float, rs: np.random.RandomState, stretch: float = 1.0) -> Array:
    """Smooth noise in [0, 1]: a random grid, ``cells`` per short side, smoothstep-interpolated.

    ``stretch`` > 1 makes the cells that many times taller than wide (grass, streaks).
    """
    gh = int(np.ceil(h / min(h, w) * cells / stretch)) + 2
    gw = int(np.ceil(w / min(h, w) * cells)) + 2
    grid = rs.rand(gh, gw)
    ys = np.linspace(0, gh - 2.001, h)
    xs = np.linspace(0, gw - 2.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    ty, tx = ys - y0, xs - x0
    ty, tx = ty * ty * (3 - 2 * ty), tx * tx * (3 - 2 * tx)
    a = grid[y0][:, x0] * (1 - tx) + grid[y0][:, x0 + 1] * tx
    b = grid[y0 + 1][:, x0] * (1 - tx) + grid[y0 + 1][:, x0 + 1] * tx
    return a * (1 - ty)[:, None] + b * ty[:, None]


def fractal(h: int, w: int, cells: float, octaves: int, rs: np.random.RandomState, gain: float = 0.5) -> Array:
    """Sum of ``octaves`` value-noise layers, each twice as fine; normalised to [0, 1]."""
    total, amp, norm = np.zeros((h, w)), 1.0, 0.0
    for i in range(octaves):
        total += amp * value_noise(h, w, cells * 2**i, rs)
        norm += amp
        amp *= gain
    total /= norm
    return (total - total.min()) / (np.ptp(total) + 1e-12)


def blur(img: Array, sigma: float) -> Array:
    """Separable Gaussian blur (reflecting edges) of an HxW or HxWxC float array."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(r, r), (r, r)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="reflect")
    p = sum(k[i] * p[i : i + img.shape[0]] for i in range(2 * r + 1))
    return sum(k[i] * p[:, i : i + img.shape[1]] for i in range(2 * r + 1))


def ridge(w: int, base: float, rough: float, rs: np.random.RandomState) -> Array:
    """A mountain skyline: heights (in pixels from the top) for each column."""
    line = np.zeros(w)
    for i, amp in enumerate((1.0, 0.5, 0.25, 0.12, 0.06)):
        n = 3 * 2**i + 2
        pts = rs.rand(n)
        line += amp * np.interp(np.linspace(0, n - 1, w), np.arange(n), pts)
    return base - rough * (line - line.mean())


def mix(a: Array, b: Array, t: Array) -> Array:
    """Per-pixel blend of colours ``a`` and ``b`` by ``t`` in [0, 1]."""
    return a * (1 - t[..., None]) + b * t[..., None]


def finish(img: Array, rs: np.random.RandomState, grain: float = 1.0, soften: float = 0.6) -> Array:
    """Lens softness, sensor grain, 8-bit quantisation."""
    img = blur(img, soften)
    img = img + rs.normal(0.0, grain, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _yx(h: int, w: int) -> Tuple[Array, Array]:
    return np.mgrid[0:h, 0:w].astype(np.float64)


# --------------------------------------------------------------------------- scenes


def valley(rs: np.random.RandomState, w: int = 321, h: int = 481) -> Array:
    """Portrait: sky with clouds, three rocky ridges, a lake, a flowery meadow and a tree."""
    y, x = _yx(h, w)
    sky = mix(np.array([70.0, 120, 200]), np.array([200.0, 215, 230]), np.clip(y / (0.3 * h), 0, 1))
    clouds = np.clip(fractal(h, w, 5, 6, rs, gain=0.6) * 2.6 - 1.1, 0, 1) * np.clip(1.3 - y / (0.3 * h), 0, 1)
    img = mix(sky, np.array([250.0, 250, 252]), clouds)
    shade = fractal(h, w, 6, 5, rs)
    for i, (base, colour) in enumerate(((0.2, (120, 140, 165)), (0.28, (95, 110, 105)), (0.37, (75, 90, 60)))):
        top = ridge(w, base * h, 0.14 * h * (1 + 0.4 * i), rs)
        inside = y >= top[None, :]
        strata = fractal(h, w, 24, 4, rs, gain=0.65)
        relief = 0.5 + 0.5 * shade + (0.8 + 0.3 * i) * (strata - 0.5)
        img = np.where(inside[..., None], np.array(colour, float) * relief[..., None], img)
    lake_top, lake_bottom = int(0.56 * h), int(0.66 * h)
    waves = 0.5 + 0.5 * np.sin(y * 1.7 + 3 * fractal(h, w, 8, 3, rs))
    glitter = np.clip(fractal(h, w, 40, 2, rs) * 3 - 2.1, 0, 1)
    water = mix(np.array([40.0, 75, 110]), np.array([160.0, 185, 205]), 0.45 * waves + 0.4 * clouds[::-1] + glitter)
    lake = (y >= lake_top) & (y < lake_bottom)
    img = np.where(lake[..., None], water, img)
    blades = fractal(h, w, 70, 3, rs, gain=0.6) * value_noise(h, w, 90, rs, stretch=6.0)
    meadow = mix(np.array([45.0, 80, 25]), np.array([190.0, 195, 90]), np.clip(1.3 * blades + 0.3 * shade - 0.1, 0, 1))
    flowers = value_noise(h, w, 60, rs) > 0.9
    hue = np.where(value_noise(h, w, 20, rs)[..., None] > 0.5, np.array([250.0, 225, 60]), np.array([245.0, 245, 240]))
    meadow = np.where(flowers[..., None], hue, meadow)
    img = np.where((y >= lake_bottom)[..., None], meadow, img)
    # A tree: trunk and a textured crown with a shadowed side.
    cx, cy, r = 0.72 * w, 0.62 * h, 0.18 * w
    trunk = (abs(x - cx) < 0.025 * w) & (y > cy) & (y < cy + 0.2 * h)
    img = np.where(trunk[..., None], np.array([70.0, 50, 35]) * (0.7 + 0.6 * blades[..., None]), img)
    d = np.hypot((x - cx) / r, (y - cy) / (1.25 * r)) + 0.35 * (fractal(h, w, 12, 3, rs) - 0.5)
    light = np.clip(0.55 + 0.6 * (cx - x) / r - 0.3 * (y - cy) / r, 0.2, 1.2)
    leaves = np.array([50.0, 95, 35]) * (0.3 + 1.2 * fractal(h, w, 45, 3, rs)[..., None]) * light[..., None]
    return finish(np.where((d < 1)[..., None], leaves, img), rs)


def harbour(rs: np.random.RandomState, w: int = 481, h: int = 321) -> Array:
    """Landscape: evening sky, a row of houses with windows and roofs, the sea, a boat."""
    y, x = _yx(h, w)
    img = mix(np.array([240.0, 170, 110]), np.array([90.0, 110, 170]), np.clip(1 - y / (0.5 * h), 0, 1) ** 1.5)
    grain = fractal(h, w, 20, 3, rs)
    horizon = int(0.62 * h)
    left = 0
    palette = [(200, 80, 60), (230, 200, 140), (90, 130, 160), (220, 220, 210), (170, 110, 70), (120, 150, 90)]
    while left < w:
        width = int(rs.randint(40, 80))
        top = horizon - int(rs.randint(60, 130))
        colour = np.array(palette[rs.randint(len(palette))], float)
        wall = (x >= left) & (x < left + width) & (y >= top) & (y < horizon)
        lit = np.where(x < left + 0.3 * width, 1.0, 0.82)
        img = np.where(wall[..., None], colour * (0.85 + 0.25 * grain[..., None]) * lit[..., None], img)
        peak = top - 0.35 * width
        roof = (y < top) & (y >= peak + abs(x - (left + width / 2)) * 0.7) & (x >= left) & (x < left + width)
        img = np.where(roof[..., None], np.array([110.0, 45, 35]) * (0.8 + 0.3 * grain[..., None]), img)
        for wy in range(top + 12, horizon - 14, 26):
            for wx in range(left + 8, left + width - 14, 18):
                win = (x >= wx) & (x < wx + 9) & (y >= wy) & (y < wy + 13)
                glow = np.array([255.0, 225, 150]) if rs.rand() < 0.4 else np.array([40.0, 50, 65])
                img = np.where(win[..., None], glow, img)
        left += width + int(rs.randint(0, 6))
    sea_y = y - horizon
    ripples = np.sin(0.25 * x + 5 * fractal(h, w, 10, 4, rs) + 0.9 * sea_y) * np.exp(-sea_y / h)
    sea = mix(np.array([30.0, 60, 90]), np.array([120.0, 140, 160]), 0.5 + 0.35 * ripples)
    reflection = img[np.clip(2 * horizon - y.astype(int), 0, h - 1), x.astype(int)]
    sea = 0.65 * sea + 0.35 * blur(reflection, 2.0)
    img = np.where((y >= horizon)[..., None], sea, img)
    hull = (abs(x - 0.3 * w) < 0.09 * w - 0.6 * np.maximum(0, y - 0.8 * h)) & (y > 0.76 * h) & (y < 0.83 * h)
    img = np.where(hull[..., None], np.array([235.0, 235, 230]) * (0.9 + 0.1 * grain[..., None]), img)
    mast = (abs(x - 0.3 * w) < 1.5) & (y > 0.5 * h) & (y <= 0.76 * h)
    return finish(np.where(mast[..., None], np.array([60.0, 50, 45]), img), rs)


def pebbles(rs: np.random.RandomState, w: int = 256, h: int = 256) -> Array:
    """Close-up of rounded stones (a Voronoi pattern) with shading and dark gaps."""
    y, x = _yx(h, w)
    n = 60
    cy, cx = rs.rand(n) * h, rs.rand(n) * w
    d = np.stack([np.hypot(y - cy[i], x - cx[i]) for i in range(n)])
    order = np.sort(d, axis=0)
    nearest = np.argmin(d, axis=0)
    edge = np.clip((order[1] - order[0]) / 6.0, 0, 1)
    tone = rs.rand(n)
    base = mix(np.array([120.0, 110, 100]), np.array([205.0, 190, 170]), tone[nearest])
    speck = fractal(h, w, 30, 3, rs)
    dome = np.sqrt(edge) * (1.1 - 0.4 * (y - cy[nearest]) / 20)
    img = base * np.clip(dome, 0.15, 1.2)[..., None] * (0.85 + 0.3 * speck[..., None])
    return finish(img, rs, grain=1.2)


def bark(rs: np.random.RandomState, w: int = 256, h: int = 192) -> Array:
    """Wood grain: warped stripes, knots, and a diagonal crack."""
    y, x = _yx(h, w)
    warp = 18 * fractal(h, w, 3, 4, rs)
    rings = 0.5 + 0.5 * np.sin(0.35 * (y + warp) + 2 * fractal(h, w, 6, 2, rs))
    for _ in range(2):
        ky, kx = rs.rand() * h, rs.rand() * w
        rings = rings * (1 - 0.6 * np.exp(-((x - kx) ** 2 / 200 + (y - ky) ** 2 / 60)))
    fibre = fractal(h, w, 60, 2, rs)
    img = mix(np.array([95.0, 60, 35]), np.array([190.0, 140, 90]), 0.7 * rings + 0.3 * fibre)
    crack = abs((y - 0.5 * h) - 0.3 * (x - 0.5 * w) + 6 * np.sin(x / 9)) < 1.8
    return finish(np.where(crack[..., None], np.array([35.0, 25, 20]), img), rs)


def foliage(rs: np.random.RandomState, w: int = 160, h: int = 128) -> Array:
    """Overlapping leaves of different greens with a vein each, over dark shade."""
    y, x = _yx(h, w)
    img = np.zeros((h, w, 3)) + np.array([20.0, 35, 15])
    for _ in range(70):
        cy, cx, a, b, t = rs.rand() * h, rs.rand() * w, 8 + 10 * rs.rand(), 4 + 4 * rs.rand(), np.pi * rs.rand()
        u = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
        v = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
        inside = (u / a) ** 2 + (v / b) ** 2 < 1
        colour = np.array([40 + 60 * rs.rand(), 100 + 80 * rs.rand(), 30 + 30 * rs.rand()])
        shade = (0.75 + 0.35 * (v / b))[..., None]
        leaf = np.where((abs(v) < 0.6)[..., None], colour * 1.25, colour * shade)
        img = np.where(inside[..., None], leaf, img)
    return finish(img, rs, grain=1.2)


def fruit(rs: np.random.RandomState, w: int = 96, h: int = 96) -> Array:
    """Three shiny fruits with highlights and soft shadows on a checked cloth."""
    y, x = _yx(h, w)
    check = ((x // 12 + y // 12) % 2).astype(float)
    img = mix(np.array([225.0, 220, 205]), np.array([170.0, 50, 50]), 0.8 * check)
    for cx, cy, r, colour in ((30, 55, 18, (200, 40, 30)), (62, 60, 16, (230, 170, 30)), (48, 34, 14, (90, 150, 40))):
        img = img * (1 - 0.45 * np.exp(-(((x - cx - 6) / r) ** 2 + ((y - cy - 8) / (0.6 * r)) ** 2)))[..., None]
        d = np.hypot(x - cx, y - cy) / r
        lambert = np.clip(np.sqrt(np.clip(1 - d**2, 0, 1)) * 0.8 + 0.25 - 0.3 * (x - cx + y - cy) / r, 0.2, 1.1)
        spec = 255 * np.exp(-((x - cx + 0.4 * r) ** 2 + (y - cy + 0.4 * r) ** 2) / (0.03 * r * r))
        body = np.array(colour, float) * lambert[..., None] + spec[..., None]
        img = np.where((d < 1)[..., None], body, img)
    return finish(img, rs, grain=1.0)


SCENES: Dict[str, Tuple[int, Callable[[np.random.RandomState], Array]]] = {
    "p0-valley.png": (1, valley),
    "p1-harbour.png": (2, harbour),
    "p2-pebbles.png": (3, pebbles),
    "p3-bark.png": (4, bark),
    "p4-foliage.png": (5, foliage),
    "p5-fruit.png": (6, fruit),
}
"""File name -> (seed, scene); the names sort in the order the tests index them."""


def main() -> int:
    """Write every scene as an RGB PNG under :data:`OUT`."""
    OUT.mkdir(exist_ok=True)
    for name, (seed, scene) in SCENES.items():
        rgb = scene(np.random.RandomState(seed))
        Image.fromarray(rgb, "RGB").save(OUT / name, optimize=True)
        print(f"{OUT / name}: {rgb.shape[1]}x{rgb.shape[0]}, {(OUT / name).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
