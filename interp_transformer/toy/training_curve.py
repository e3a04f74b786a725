"""A hand-written SVG of a training history (loss on a log scale, accuracy), so a card's figure is plain text.

The figure is a pure function of ``training.json``'s history: regenerating it gives the same bytes.
"""

from __future__ import annotations

import math
from typing import Sequence

WIDTH, HEIGHT, MARGIN = 720, 260, 52
COLOURS = {"train": "#1f77b4", "test": "#d62728"}


def _panel(history: Sequence[dict], keys: dict[str, str], x0: float, title: str, log: bool) -> list[str]:
    """One panel: a line per ``{label: history key}``, x = step, y linear in [0, 1] or log10."""
    width, height = WIDTH / 2 - MARGIN - 10, HEIGHT - 2 * MARGIN
    steps = [record["step"] for record in history]
    values = {label: [record[key] for record in history] for label, key in keys.items()}
    if log:
        flat = [v for series in values.values() for v in series if v > 0]
        low, high = math.floor(math.log10(min(flat))), math.ceil(math.log10(max(flat)))
        transform = lambda v: math.log10(max(v, 10.0**low))  # noqa: E731
        ticks = [(math.log10(10.0**e), f"1e{e}") for e in range(low, high + 1, max(1, (high - low) // 5))]
    else:
        low, high, transform = 0.0, 1.0, float
        ticks = [(t / 4, f"{t / 4:g}") for t in range(5)]
    x_of = lambda s: x0 + width * s / max(steps)  # noqa: E731
    y_of = lambda v: MARGIN + height * (1 - (transform(v) - low) / (high - low))  # noqa: E731
    parts = [f'<rect x="{x0}" y="{MARGIN}" width="{width:.0f}" height="{height}" fill="none" stroke="#888"/>',
             f'<text x="{x0 + width / 2:.0f}" y="{MARGIN - 12}" text-anchor="middle">{title}</text>',
             f'<text x="{x0 + width / 2:.0f}" y="{HEIGHT - 12}" text-anchor="middle">step</text>']
    for y, label in ticks:
        ypos = MARGIN + height * (1 - (y - low) / (high - low))
        parts.append(f'<text x="{x0 - 4}" y="{ypos + 4:.1f}" text-anchor="end">{label}</text>')
    for fraction in (0, 0.5, 1):
        parts.append(f'<text x="{x0 + width * fraction:.1f}" y="{MARGIN + height + 16}" text-anchor="middle">'
                     f'{round(max(steps) * fraction):,}</text>')
    for label, series in values.items():
        points = " ".join(f"{x_of(s):.1f},{y_of(v):.1f}" for s, v in zip(steps, series))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{COLOURS[label]}" stroke-width="1.5"/>')
    return parts


def training_curve_svg(history: Sequence[dict], title: str) -> str:
    """Train and test loss (log scale) and accuracy over steps, from records holding
    ``step``, ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
             f'font-size="11">', f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{WIDTH / 2:.0f}" y="14" text-anchor="middle" font-size="13">{title}</text>']
    parts += _panel(history, {"train": "train_loss", "test": "test_loss"}, MARGIN, "cross-entropy (log scale)", log=True)
    parts += _panel(history, {"train": "train_accuracy", "test": "test_accuracy"}, WIDTH / 2 + MARGIN, "accuracy", log=False)
    for i, (label, colour) in enumerate(COLOURS.items()):
        parts.append(f'<text x="{WIDTH - 110 + 55 * i}" y="14" fill="{colour}">{label}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"
