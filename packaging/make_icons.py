"""Draw the application icon at every size desktops ask for (run once; the PNGs are committed).

Drawn with Pillow rather than shipped as a binary from elsewhere so anyone can change the
colours or shape and regenerate: ``python packaging/make_icons.py``. Each size is drawn from
a 4x supersampled canvas so small sizes stay crisp instead of being shrunk from 512 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZES = (16, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 32, 48, 64, 128, 256)
NAME = "iad-workstation"
BACKGROUND = (28, 44, 66, 255)
PART = (176, 190, 204, 255)
HOT = (255, 120, 40)
LENS = (236, 242, 248, 255)


def draw_icon(size: int) -> Image.Image:
    """A steel part (rounded plate) with a hot anomaly spot under a magnifying lens."""
    scale = 4
    s = size * scale
    canvas = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 5, fill=BACKGROUND)
    draw.rounded_rectangle(
        (s * 0.14, s * 0.22, s * 0.70, s * 0.78), radius=s // 12, fill=PART
    )
    heat = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ImageDraw.Draw(heat).ellipse((s * 0.42, s * 0.30, s * 0.64, s * 0.52), fill=(*HOT, 255))
    canvas.alpha_composite(heat.filter(ImageFilter.GaussianBlur(s * 0.04)))
    lens_box = (s * 0.40, s * 0.18, s * 0.84, s * 0.62)
    width = max(scale, int(s * 0.06))
    draw.ellipse(lens_box, outline=LENS, width=width)
    draw.line((s * 0.78, s * 0.56, s * 0.92, s * 0.86), fill=LENS, width=int(width * 1.6))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_out = Path(__file__).resolve().parent.parent / "resources" / "icons" / "app"
    parser.add_argument("--out", type=Path, default=default_out)
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    images = {size: draw_icon(size) for size in SIZES}
    for size, image in images.items():
        image.save(out / f"{NAME}-{size}.png", optimize=True)
    images[256].save(out / f"{NAME}.ico", sizes=[(n, n) for n in ICO_SIZES])
    print(f"wrote {len(SIZES)} PNGs and {NAME}.ico to {out}")


if __name__ == "__main__":
    main()
