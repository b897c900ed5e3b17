"""Draw ``docs/realism.png``: one ``.hific`` file decoded at realism 0 and 1.

    python docs/make_realism_figure.py --checkpoint ~/runs/vr-small/s2/last.pt \\
        --photo tests/data/photos/p1-harbour.png --quality 0.42

The photo is compressed once at ``--quality`` (default: the shipped ``lo``);
the same bytes are decoded at realism 0 and 1, and a crop of the original
and both decodes is laid side by side with the file's bpp and each decode's
PSNR in the captions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    from hific.zoo import VARIABLE_RATE_QUALITIES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a variable-rate, realism-conditioned checkpoint")
    p.add_argument("--photo", default=str(REPO / "tests" / "data" / "photos" / "p1-harbour.png"))
    p.add_argument("--quality", type=float, default=VARIABLE_RATE_QUALITIES["lo"])
    p.add_argument("--crop", type=int, default=256, help="side of the square crop shown (from the centre)")
    p.add_argument("--out", default=str(REPO / "docs" / "realism.png"))
    args = p.parse_args()

    import numpy as np
    from PIL import Image, ImageDraw

    from hific.checkpoint import load_model
    from hific.coding import Codec
    from hific.evaluation.metrics import psnr
    from hific.image_io import read_image

    codec = Codec(*load_model(args.checkpoint))
    if not (codec.variable_rate and codec.conditioned):
        raise SystemExit(f"error: {args.checkpoint} is not a variable-rate, realism-conditioned checkpoint")
    rgb = read_image(args.photo)
    data = codec.compress(rgb, quality=args.quality)
    bpp = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    panels = [("original", rgb)]
    for r in (0.0, 1.0):
        rec = codec.decompress(data, realism=r)
        panels.append((f"realism {r:g}: {psnr(rgb, rec):.2f} dB", rec))
    h, w = rgb.shape[:2]
    c = min(args.crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    caption, gap = 22, 6
    sheet = Image.new("RGB", (3 * c + 2 * gap, c + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(panels):
        x = i * (c + gap)
        sheet.paste(Image.fromarray(np.ascontiguousarray(img[top : top + c, left : left + c])), (x, caption))
        draw.text((x + 4, 4), label if i else f"original ({bpp:.3f} bpp file)", fill="black")
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: quality {args.quality:g}, {len(data):,} bytes, {bpp:.4f} bpp; " + "; ".join(t for t, _ in panels[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
