"""Raven-style progressive matrices (after RAVEN / I-RAVEN), rendered with PIL.

A panel holds `number` identical entities (uniform panels) in the slots of its layout. Attributes are
integer levels: number (1..slots), type (triangle, square, pentagon, hexagon, circle), size (6 scales)
and colour (10 grey levels); position is the set of occupied slots. Each attribute follows one rule
along the rows: constant, progression (+-1, +-2; for position a shift of the occupied set), arithmetic
(col3 = col1 + col2; size adds 1 as in RAVEN) or distribute-three (three values cycled over the rows).
Number and position form one group with a single rule, as in RAVEN. 3x3 matrices give 8 context panels; 2x2 matrices give 3 (rules over two
columns: constant or progression). The 6 candidates are balanced as in I-RAVEN's bisection tree with
3 x 2 values: the answer plus 2 new values of one attribute times 1 new value of another, so every
attribute value appears in a fixed share of the candidates and the answer is not their mode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from toolkit.world.render import _polygon

TYPES = ("triangle", "square", "pentagon", "hexagon", "circle")
SIZES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GREYS = (255, 224, 196, 168, 140, 112, 84, 56, 28, 0)
LAYOUTS = {"center": 1, "grid2": 4, "grid3": 9}
RANGES = {"type": (0, len(TYPES) - 1), "size": (0, len(SIZES) - 1), "colour": (0, len(GREYS) - 1)}


@dataclass(frozen=True)
class Panel:
    layout: str
    number: int
    type: int
    size: int
    colour: int
    slots: tuple[int, ...]  # occupied slot indices (nuisance: not governed by a rule)


def _range(attr: str, layout: str) -> tuple[int, int]:
    return (1, LAYOUTS[layout]) if attr == "number" else RANGES[attr]


def _rows_for_rule(rule: str, lo: int, hi: int, cols: int, rng: np.random.Generator) -> list[list[int]] | None:
    """Values of one attribute for every row (3 rows x `cols` columns), or None if the range is too small."""
    rows = []
    if rule == "distribute_three":
        if hi - lo + 1 < 3:
            return None
        vals = [int(v) for v in rng.choice(np.arange(lo, hi + 1), 3, replace=False)]
        shifts = [0] + ([1, 2] if rng.random() < 0.5 else [2, 1])
        return [[vals[(c + s) % 3] for c in range(cols)] for s in shifts]
    step = int(rng.choice([-2, -1, 1, 2])) if rule == "progression" else 0
    for _ in range(cols):  # as many rows as columns
        if rule == "arithmetic":
            extra = 1 if hi == RANGES["size"][1] else 0
            options = [
                (a, b) for a in range(lo, hi + 1) for b in range(lo, hi + 1) if lo <= a + b + extra <= hi and b > lo
            ]
            if not options:
                return None
            a, b = options[int(rng.integers(len(options)))]
            rows.append([a, b, a + b + extra])
            continue
        span = step * (cols - 1)
        starts = [s for s in range(lo, hi + 1) if lo <= s + span <= hi]
        if not starts:
            return None
        s = int(rng.choice(starts))
        rows.append([s + step * c for c in range(cols)])
    return rows


def _position_rows(
    rule: str, slots: int, n: int, cols: int, rng: np.random.Generator
) -> list[list[tuple[int, ...]]] | None:
    """Occupied-slot sets per row for a position rule (number stays n): constant, progression (the set
    shifted by a step, modulo the slots) or distribute-three (three different sets cycled)."""

    def subset() -> tuple[int, ...]:
        return tuple(sorted(int(v) for v in rng.choice(slots, n, replace=False)))

    if rule == "distribute_three":
        sets: list[tuple[int, ...]] = []
        for _ in range(50):
            cand = subset()
            if cand not in sets:
                sets.append(cand)
            if len(sets) == 3:
                break
        if len(sets) < 3:
            return None
        shifts = [0] + ([1, 2] if rng.random() < 0.5 else [2, 1])
        return [[sets[(c + sh) % 3] for c in range(cols)] for sh in shifts]
    step = int(rng.choice([-2, -1, 1, 2])) if rule == "progression" else 0
    rows = []
    for _ in range(cols):
        start = subset()
        rows.append([tuple(sorted((v + step * c) % slots for v in start)) for c in range(cols)])
    if rule == "progression" and any(len(set(row)) < cols for row in rows):
        return None  # a shift that maps the set onto itself shows no progression
    return rows


def make_matrix(rng: np.random.Generator, size3: bool = True) -> tuple[list[Panel], Panel, dict[str, str]]:
    """Returns (context panels in reading order, the answer panel, the rule of each attribute).

    The number/position group has exactly one rule, on number (positions random) or, in grid
    layouts, on position (number fixed).
    """
    cols = 3 if size3 else 2
    while True:
        layout = str(rng.choice(list(LAYOUTS)))
        slots = LAYOUTS[layout]
        on_position = slots > 1 and rng.random() < 0.4
        rules, values, positions = {}, {}, None
        ok = True
        for attr in ("number", "type", "size", "colour"):
            lo, hi = _range(attr, layout)
            options = ["constant", "progression"] + (["arithmetic", "distribute_three"] if size3 else [])
            if attr == "type" and "arithmetic" in options:
                options.remove("arithmetic")
            if attr == "number" and on_position:
                n = int(rng.integers(1, slots))
                rule = str(rng.choice([o for o in options if o != "arithmetic"]))
                positions = _position_rows(rule, slots, n, cols, rng)
                if positions is None:
                    ok = False
                    break
                rules["position"] = rule
                values["number"] = [[n] * cols for _ in range(cols)]
                continue
            if lo == hi:
                options = ["constant"]
            rule = str(rng.choice(options))
            rows = _rows_for_rule(rule, lo, hi, cols, rng)
            if rows is None:
                ok = False
                break
            rules[attr], values[attr] = rule, rows
        if ok:
            break
    panels = []
    for r in range(cols):
        for c in range(cols):
            n = values["number"][r][c]
            if positions is not None:
                occupied = positions[r][c]
            else:
                occupied = tuple(sorted(int(s) for s in rng.choice(slots, n, replace=False)))
            panels.append(
                Panel(layout, n, values["type"][r][c], values["size"][r][c], values["colour"][r][c], occupied)
            )
    return panels[:-1], panels[-1], rules


def candidates(answer: Panel, rng: np.random.Generator) -> tuple[list[Panel], int]:
    """Six balanced candidates (answer included) and the answer's index."""
    slots = LAYOUTS[answer.layout]
    modifiable = [
        a for a in ("number", "type", "size", "colour") if _range(a, answer.layout)[1] > _range(a, answer.layout)[0] + 1
    ]
    if 1 < answer.number < slots - 1:
        modifiable.append("position")
    first, second = (str(a) for a in rng.choice(modifiable, 2, replace=False))
    if {first, second} == {"number", "position"}:  # one of the pair stands in for both
        second = str(rng.choice([a for a in ("type", "size", "colour") if a in modifiable]))

    def current(attr: str):
        return answer.slots if attr == "position" else getattr(answer, attr)

    def new_values(attr: str, k: int) -> list:
        if attr == "position":
            found: list[tuple[int, ...]] = []
            while len(found) < k:
                cand = tuple(sorted(int(v) for v in rng.choice(slots, answer.number, replace=False)))
                if cand != answer.slots and cand not in found:
                    found.append(cand)
            return found
        lo, hi = _range(attr, answer.layout)
        pool = [v for v in range(lo, hi + 1) if v != current(attr)]
        return [int(v) for v in rng.choice(pool, k, replace=False)]

    a_vals = [current(first)] + new_values(first, 2)
    b_vals = [current(second)] + new_values(second, 1)
    # Each number value gets one set of positions shared by all candidates with it, so positions are
    # as balanced as numbers (random positions per candidate would make the answer's the mode).
    placed = {answer.number: answer.slots}
    for v in a_vals if first == "number" else b_vals if second == "number" else []:
        placed.setdefault(v, tuple(sorted(int(x) for x in rng.choice(slots, v, replace=False))))

    def change(panel: Panel, attr: str, value) -> Panel:
        if attr == "number":
            return replace(panel, number=value, slots=placed[value])
        if attr == "position":
            return replace(panel, slots=value)
        return replace(panel, **{attr: value})

    cands = [
        change(change(answer, first, a), second, b) if (a, b) != (a_vals[0], b_vals[0]) else answer
        for a, b in itertools.product(a_vals, b_vals)
    ]
    order = rng.permutation(len(cands)).tolist()
    shuffled = [cands[i] for i in order]
    return shuffled, order.index(0)


def render_panel(panel: Panel, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(0, 0, 0))
    side = {1: 1, 4: 2, 9: 3}[LAYOUTS[panel.layout]]
    cell = size / side
    grey = GREYS[panel.colour]
    for slot in panel.slots:
        cy, cx = (slot // side + 0.5) * cell, (slot % side + 0.5) * cell
        r = cell * SIZES[panel.size] / 2 * 0.9
        shape = TYPES[panel.type]
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(grey,) * 3, outline=(0, 0, 0))
        else:
            draw.polygon(_polygon(shape, cx, cy, r), fill=(grey,) * 3, outline=(0, 0, 0))
    return img
