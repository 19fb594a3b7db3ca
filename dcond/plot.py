"""Small line plots as PNG, drawn with Pillow (already a dependency through torchvision), for reports."""

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
WIDTH, HEIGHT, MARGIN = 640, 420, 60


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi == lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= count)
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _label(value: float, log: bool) -> str:
    value = 10 ** value if log else value
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.1e}"


def line_plot(path: Path, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str, title: str,
              log_x: bool = False) -> None:
    """One line with markers per series; x on a log10 scale with `log_x`."""
    points = {name: sorted((math.log10(x) if log_x else x, y) for x, y in pts) for name, pts in series.items() if pts}
    xs = [x for pts in points.values() for x, _ in pts] or [0.0]
    ys = [y for pts in points.values() for _, y in pts] or [0.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_pad = (max(ys) - min(ys)) * 0.1 or 0.05
    y_lo, y_hi = min(ys) - y_pad, max(ys) + y_pad
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)

    def at(x: float, y: float) -> tuple[float, float]:
        return (MARGIN + (x - x_lo) / (x_hi - x_lo) * (WIDTH - 2 * MARGIN),
                HEIGHT - MARGIN - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - 2 * MARGIN))

    draw.rectangle([MARGIN, MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN], outline="black")
    for t in _ticks(x_lo, x_hi):
        px, _ = at(t, y_lo)
        draw.line([px, HEIGHT - MARGIN, px, HEIGHT - MARGIN + 4], fill="black")
        draw.text((px - 12, HEIGHT - MARGIN + 6), _label(t, log_x), fill="black")
    for t in _ticks(y_lo, y_hi):
        _, py = at(x_lo, t)
        draw.line([MARGIN - 4, py, MARGIN, py], fill="black")
        draw.text((8, py - 6), _label(t, False), fill="black")
    draw.text((WIDTH / 2 - 4 * len(title), 20), title, fill="black")
    draw.text((WIDTH / 2 - 3 * len(x_label), HEIGHT - 25), x_label, fill="black")
    draw.text((8, MARGIN - 20), y_label, fill="black")
    for k, (name, pts) in enumerate(points.items()):
        colour = COLOURS[k % len(COLOURS)]
        pixels = [at(x, y) for x, y in pts]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        lx, ly = WIDTH - MARGIN - 150, MARGIN + 8 + 14 * k
        draw.line([(lx, ly + 6), (lx + 10, ly + 6)], fill=colour, width=2)  # the default font has no dash glyph
        draw.text((lx + 14, ly), name, fill=colour)
    img.save(path)
