"""Rendering with PIL: single objects, two-object scenes, rendered text, blank images.

Every function takes a numpy Generator, so a world seed fixes every pixel.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from toolkit.world.ontology import Category

RGB = {
    "black": (25, 25, 25),
    "blue": (35, 70, 215),
    "brown": (135, 80, 35),
    "green": (40, 160, 55),
    "grey": (128, 128, 128),
    "orange": (245, 140, 25),
    "pink": (245, 150, 190),
    "purple": (130, 50, 170),
    "red": (215, 30, 35),
    "white": (245, 245, 245),
    "yellow": (240, 220, 35),
}


def size_fraction(size: int) -> float:
    """Diameter as a fraction of the canvas for size rank 1..10 (0.30 .. 0.885)."""
    return 0.30 + 0.065 * (size - 1)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, start: float = -math.pi / 2, radii=(1.0,)):
        pts = []
        for i in range(n * len(radii)):
            a = start + 2 * math.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "triangle":
        return ring(3)
    if shape == "square":
        return ring(4, start=-math.pi / 4)
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.65 * r, cy), (cx, cy + r), (cx - 0.65 * r, cy)]
    if shape == "pentagon":
        return ring(5)
    if shape == "hexagon":
        return ring(6)
    if shape == "octagon":
        return ring(8, start=-math.pi / 8)
    if shape == "star":
        return ring(5, radii=(1.0, 0.45))
    if shape == "cross":
        t = 0.35 * r
        return [
            (cx - t, cy - r),
            (cx + t, cy - r),
            (cx + t, cy - t),
            (cx + r, cy - t),
            (cx + r, cy + t),
            (cx + t, cy + t),
            (cx + t, cy + r),
            (cx - t, cy + r),
            (cx - t, cy + t),
            (cx - r, cy + t),
            (cx - r, cy - t),
            (cx - t, cy - t),
        ]
    if shape == "trapezoid":
        return [
            (cx - 0.5 * r, cy - 0.7 * r),
            (cx + 0.5 * r, cy - 0.7 * r),
            (cx + r, cy + 0.7 * r),
            (cx - r, cy + 0.7 * r),
        ]
    if shape == "arrow":
        return [
            (cx - r, cy - 0.3 * r),
            (cx + 0.2 * r, cy - 0.3 * r),
            (cx + 0.2 * r, cy - 0.8 * r),
            (cx + r, cy),
            (cx + 0.2 * r, cy + 0.8 * r),
            (cx + 0.2 * r, cy + 0.3 * r),
            (cx - r, cy + 0.3 * r),
        ]
    raise ValueError(f"unknown shape '{shape}'")


def background(size: int, rng: np.random.Generator) -> Image.Image:
    """Neutral noise texture: objects are told apart from it by flat fill and outline."""
    level = rng.integers(80, 150)
    noise = rng.normal(level, 22, size=(size, size, 1)).clip(0, 255)
    return Image.fromarray(np.repeat(noise, 3, axis=2).astype(np.uint8))


def jittered(colour: str, rng: np.random.Generator, jitter: int) -> tuple[int, int, int]:
    base = np.array(RGB[colour])
    return tuple(int(v) for v in (base + rng.integers(-jitter, jitter + 1, size=3)).clip(0, 255))


def draw_shape(img: Image.Image, shape: str, colour: tuple[int, int, int], cx: float, cy: float, r: float) -> None:
    draw = ImageDraw.Draw(img)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    outline = (0, 0, 0) if luminance > 110 else (255, 255, 255)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=outline)
    elif shape == "ellipse":
        draw.ellipse([cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r], fill=colour, outline=outline)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=colour, outline=outline)


def render_object(cat: Category, size: int, rng: np.random.Generator, jitter: int = 18) -> Image.Image:
    """One object at its canonical colour (jittered) and a scale given by its size rank."""
    img = background(size, rng)
    r = size * size_fraction(cat.size) / 2 * rng.uniform(0.92, 1.08)
    cx = rng.uniform(r, size - r) if size > 2 * r else size / 2
    cy = rng.uniform(r, size - r) if size > 2 * r else size / 2
    draw_shape(img, cat.shape, jittered(cat.colour, rng, jitter), cx, cy, r)
    return img


def render_generic(shape: str, colour: str, size: int, rng: np.random.Generator, jitter: int = 18) -> Image.Image:
    """A plain shape in a colour (not a category): grounds colour and shape words in pixels."""
    img = background(size, rng)
    r = size * rng.uniform(0.3, 0.8) / 2
    draw_shape(img, shape, jittered(colour, rng, jitter), rng.uniform(r, size - r), rng.uniform(r, size - r), r)
    return img


def render_pair(left: Category, right: Category, size: int, rng: np.random.Generator, jitter: int = 18) -> Image.Image:
    """Two objects side by side, drawn to a common scale so their relative size is visible."""
    img = background(size, rng)
    half = size / 2
    for cat, cx in ((left, half / 2), (right, half + half / 2)):
        r = half * size_fraction(cat.size) / 2
        cy = rng.uniform(r, size - r)
        draw_shape(img, cat.shape, jittered(cat.colour, rng, jitter), cx, cy, r)
    return img


def render_text(text: str, size: int, rng: np.random.Generator, font_size: int | None = None) -> Image.Image:
    """Dark text on a light background, wrapped to the width, centred, with a little positional jitter."""
    shade = int(rng.integers(215, 256))
    img = Image.new("RGB", (size, size), (shade, shade, shade))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=font_size or max(6, size // 3))
    words = text.split()
    lines, line = [], ""
    for word in words:  # greedy wrap to the canvas width
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > size - 2:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    height = len(lines) * (font.size + 1)
    y = (size - height) / 2 + rng.uniform(-1, 1)
    for ln in lines:
        x = (size - draw.textlength(ln, font=font)) / 2 + rng.uniform(-1, 1)
        draw.text((x, y), ln, fill=(10, 10, 10), font=font)
        y += font.size + 1
    return img


def blank(size: int) -> Image.Image:
    """A uniform grey image (the blank-image control of few-shot ablations)."""
    return Image.new("RGB", (size, size), (128, 128, 128))
