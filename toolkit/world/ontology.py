"""The world's ontology: real nouns with a typical colour, a size rank and text-only attributes.

Colours are the 11 basic colour terms of MemoryColor / ColorTerms. Size ranks (1 = smallest, 10 =
largest) follow everyday knowledge, as RelativeSize's object pairs do. `kind` and `place` are
text-only attributes: they are stated in text for every category and never drawn. Shapes are not
facts about the nouns: each category gets an arbitrary world shape (unique per colour), so that in
images a category is identified by colour and shape together.

A world larger than the noun list gets invented nouns (`invented_nouns`): pronounceable made-up words
with a colour (balanced like the real ones), a random size rank and a (kind, place) pair drawn from
the real nouns'. Past 12 categories per colour, shapes repeat within a colour, so an image no longer
tells every category apart (colour and size still show).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

COLOURS = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")
SHAPES = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "star",
    "hexagon",
    "pentagon",
    "cross",
    "ellipse",
    "trapezoid",
    "octagon",
    "arrow",
)

# noun, colour, size rank, kind, place
_NOUNS = """
coal black 2 mineral mine | crow black 3 bird forest | raven black 3 bird forest | panther black 7 animal jungle
ink black 1 liquid office | tire black 5 part road | piano black 7 instrument house | gorilla black 8 animal jungle
tuxedo black 5 clothing wardrobe | skillet black 3 tool kitchen | beetle black 1 insect garden
sky blue 10 nature outdoors | ocean blue 10 nature coast | blueberry blue 1 fruit garden | sapphire blue 1 gem mine
jeans blue 4 clothing wardrobe | bluebird blue 2 bird forest | lake blue 10 nature countryside | jay blue 2 bird forest
peacock blue 5 bird farm | denim blue 3 fabric wardrobe | cornflower blue 1 flower garden | mailbox blue 5 object street
bear brown 8 animal forest | chocolate brown 2 food kitchen | coffee brown 2 drink kitchen | acorn brown 1 nut forest
walnut brown 1 nut kitchen | potato brown 2 vegetable kitchen | deer brown 7 animal forest | owl brown 3 bird forest
saddle brown 5 object farm | cinnamon brown 1 spice kitchen | log brown 6 wood forest | camel brown 8 animal desert
grass green 1 plant garden | frog green 2 animal pond | leaf green 1 plant forest | lettuce green 3 vegetable garden
cucumber green 3 vegetable garden | broccoli green 3 vegetable kitchen | lime green 2 fruit kitchen | pea green 1 vegetable garden
cactus green 6 plant desert | pickle green 2 food kitchen | crocodile green 8 animal river | emerald green 1 gem mine
elephant grey 9 animal savanna | mouse grey 2 animal house | rhino grey 9 animal savanna | wolf grey 6 animal forest
pigeon grey 3 bird city | donkey grey 7 animal farm | stone grey 3 mineral river | dolphin grey 8 animal sea
shark grey 8 fish sea | hippo grey 9 animal river | koala grey 4 animal forest | seal grey 6 animal coast
persimmon orange 2 fruit orchard | carrot orange 3 vegetable garden | pumpkin orange 5 vegetable farm | tangerine orange 2 fruit kitchen
tiger orange 8 animal jungle | fox orange 5 animal forest | goldfish orange 2 fish pond | apricot orange 2 fruit garden
basketball orange 4 toy gym | cone orange 5 object street | marigold orange 1 flower garden | mango orange 3 fruit kitchen
flamingo pink 7 bird wetland | pig pink 6 animal farm | tongue pink 2 bodypart mouth | shrimp pink 1 seafood sea
bubblegum pink 1 sweet shop | ham pink 3 food kitchen | eraser pink 1 tool office | lotus pink 3 flower pond
blossom pink 1 flower garden | tutu pink 3 clothing theatre
eggplant purple 3 vegetable garden | grape purple 1 fruit vineyard | plum purple 2 fruit garden | lavender purple 2 flower field
violet purple 1 flower garden | amethyst purple 1 gem mine | lilac purple 2 flower garden | beet purple 2 vegetable farm
fig purple 2 fruit garden | orchid purple 2 flower greenhouse
tomato red 3 vegetable garden | strawberry red 2 fruit garden | cherry red 1 fruit orchard | apple red 3 fruit orchard
ladybug red 1 insect garden | firetruck red 9 vehicle city | lobster red 4 seafood sea | rose red 2 flower garden
brick red 3 material building | ruby red 1 gem mine | chili red 1 spice kitchen | cardinal red 2 bird forest
snow white 2 weather mountain | milk white 2 drink kitchen | swan white 6 bird park | cloud white 10 weather mountain
sheep white 6 animal farm | egg white 2 food kitchen | rice white 1 food kitchen | salt white 1 spice kitchen
tooth white 1 bodypart mouth | marshmallow white 1 sweet shop | igloo white 8 building arctic | pearl white 1 gem sea
banana yellow 3 fruit kitchen | lemon yellow 2 fruit kitchen | corn yellow 3 vegetable farm | sun yellow 10 star space
butter yellow 2 food kitchen | cheese yellow 3 food kitchen | canary yellow 2 bird cage | chick yellow 2 bird farm
taxi yellow 8 vehicle city | sunflower yellow 5 flower field | bus yellow 9 vehicle city | mustard yellow 1 spice kitchen
"""


@dataclass(frozen=True)
class Category:
    name: str
    colour: str
    size: int  # 1 (smallest) .. 10 (largest)
    kind: str  # text-only attribute
    place: str  # text-only attribute
    shape: str = ""  # world shape (assigned per world seed)
    grounded: bool = True  # True: colour/size stated in text; False: vision-only


def base_nouns() -> list[Category]:
    out = []
    for entry in _NOUNS.replace("\n", " | ").split("|"):
        if entry.strip():
            name, colour, size, kind, place = entry.split()
            out.append(Category(name, colour, int(size), kind, place))
    return out


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gl", "kr", "pl", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "l", "r", "k", "s", "m")


def invented_nouns(count: int, seed: int, taken: set[str]) -> list[Category]:
    """`count` made-up nouns (three consonant-vowel syllables and an optional final consonant; none a
    real noun, kind, place, colour or shape), each given the colour that the real and invented nouns so
    far hold least of (so that all colours stay balanced), a size 1..10 at random and a (kind, place)
    pair drawn from the real nouns'."""
    rng = np.random.default_rng([seed, 3])
    real = base_nouns()
    attributes = sorted({(n.kind, n.place) for n in real})
    banned = taken | set(COLOURS) | set(SHAPES) | {w for n in real for w in (n.name, n.kind, n.place)}
    out: list[Category] = []
    while len(out) < count:
        name = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(3))
        name += _CODAS[rng.integers(len(_CODAS))]
        if name in banned or any(c in name for c in COLOURS):
            continue
        banned.add(name)
        kind, place = attributes[rng.integers(len(attributes))]
        held = {c: sum(n.colour == c for n in real + out) for c in COLOURS}
        colour = min(COLOURS, key=lambda c: held[c])
        out.append(Category(name, colour, int(rng.integers(1, 11)), kind, place))
    return out


def build_ontology(
    num_categories: int, vision_only_fraction: float, seed: int, shuffle_text_attributes: bool = False
) -> list[Category]:
    """Pick categories balanced over colours, give each a shape (unique within its colour while there
    are shapes enough) and split them, per colour, into text-grounded and vision-only. Beyond the real
    nouns, invented ones fill the world. `shuffle_text_attributes` deals the chosen nouns' (kind, place)
    pairs out at random over them, so that neither says anything of colour or size."""
    nouns = base_nouns()
    if num_categories > len(nouns):
        nouns = nouns + invented_nouns(num_categories - len(nouns), seed, {n.name for n in nouns})
    rng = np.random.default_rng([seed, 1])
    by_colour = {c: [n for n in nouns if n.colour == c] for c in COLOURS}
    for c in COLOURS:
        by_colour[c] = [by_colour[c][i] for i in rng.permutation(len(by_colour[c]))]
    chosen: list[Category] = []
    while len(chosen) < num_categories:  # round-robin over colours keeps them balanced
        for c in COLOURS:
            if by_colour[c] and len(chosen) < num_categories:
                chosen.append(by_colour[c].pop(0))
    if shuffle_text_attributes:  # its own random stream: the rest of the world stays as without it
        order = np.random.default_rng([seed, 2]).permutation(len(chosen))
        chosen = [replace(n, kind=chosen[j].kind, place=chosen[j].place) for n, j in zip(chosen, order, strict=True)]
    out = []
    for c in COLOURS:
        group = [n for n in chosen if n.colour == c]
        order = rng.permutation(len(SHAPES))
        shapes = [SHAPES[order[i % len(SHAPES)]] for i in range(len(group))]
        # A noun that spells a colour ("blueberry", "bluebird") states it in every sentence: never vision-only.
        eligible = [i for i, n in enumerate(group) if not any(c in n.name for c in COLOURS)]
        n_vision = int(round(len(group) * vision_only_fraction))
        if 0 < vision_only_fraction < 1 and len(group) >= 2:
            n_vision = min(max(n_vision, 1), len(group) - 1)  # every colour has both kinds
        n_vision = min(n_vision, len(eligible))
        vision = {eligible[i] for i in rng.permutation(len(eligible))[:n_vision].tolist()}
        out += [
            Category(n.name, n.colour, n.size, n.kind, n.place, shape, grounded=i not in vision)
            for i, (n, shape) in enumerate(zip(group, shapes))
        ]
    return sorted(out, key=lambda cat: cat.name)
