"""Colour words for pixels, decided in CIELAB (a perceptual space) by the nearest focal colour.

Hue ranges in HSV call a dark brown jacket black and a navy one nothing: HSV's saturation and value are not how
people judge colour, and every colour word needed its own thresholds. Here each of the eleven basic colour terms
(Berlin & Kay; their foci measured by Sturges & Whitfield, 1995) has a few focal sRGB examples (the focus and its
common light / dark variants: navy is blue, olive green, beige-ish tan brown); a pixel takes the word of the
nearest example by CIE76 distance with lightness weighted down (shade and shadow move L* most), and its shade
comes from its lightness against the word's focus. White is judged against the frame (lightness constancy: a
white horse in shade is grey in absolute terms but still the lightest thing in view): a colourless pixel within
WHITE_RANGE of the frame's bright end (`frame_white`) is white.
"""
from __future__ import annotations

import cv2
import numpy as np

# sRGB examples per basic colour term; the first is the focus (what the plain word means)
FOCAL_RGB: dict[str, tuple[tuple[int, int, int], ...]] = {
    "black": ((20, 20, 22), (45, 45, 50)),
    "white": ((245, 245, 245), (215, 215, 222)),
    "gray": ((128, 128, 128), (85, 86, 90), (175, 175, 178)),
    "red": ((200, 30, 35), (140, 20, 30), (230, 70, 60), (100, 15, 25)),
    "orange": ((240, 130, 30), (210, 100, 30), (250, 170, 90)),
    "yellow": ((240, 215, 40), (200, 180, 50), (250, 240, 140)),
    "green": ((40, 150, 60), (25, 85, 40), (130, 200, 110), (100, 110, 50), (30, 55, 35)),
    "blue": ((40, 70, 190), (25, 40, 110), (110, 160, 225), (25, 30, 65), (70, 110, 160)),
    "purple": ((120, 50, 150), (75, 30, 95), (175, 130, 205)),
    "pink": ((240, 140, 180), (215, 80, 140), (250, 200, 215)),
    "brown": ((120, 75, 40), (75, 48, 30), (160, 115, 75), (50, 36, 28), (150, 130, 105)),
}
ALIASES = {"grey": "gray", "silver": "gray"}
L_WEIGHT = 0.5     # lightness counts half: a sunlit and a shaded side of one coat are one colour
SHADE_STEP = 12.0  # L* units off the focus that make a pixel "light" / "dark"
MAX_PIXELS = 4096  # enough for a share to two decimals; more only costs time
WHITE_PERCENTILE = 98.0  # of L* over the frame: its white (a percentile, not the maximum: highlights)
WHITE_RANGE = 20.0  # L* below the frame's white that still reads as white when colourless
MIN_WHITE_L = 80.0  # a dim frame's brightest grey is not white (mid grey is L* 54)
ACHROMATIC_C = 15.0  # chroma C* under which a pixel has no colour to speak of

NAMES = tuple(FOCAL_RGB)
_EXAMPLES = [(n, rgb) for n in NAMES for rgb in FOCAL_RGB[n]]


def to_lab(pixels_rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 sRGB -> (N, 3) float32 CIELAB (L* 0..100)."""
    return cv2.cvtColor(pixels_rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


_LAB = to_lab(np.array([rgb for _, rgb in _EXAMPLES], np.uint8))
_OWNER = np.array([NAMES.index(n) for n, _ in _EXAMPLES])
_FOCUS_L = {n: float(to_lab(np.array([FOCAL_RGB[n][0]], np.uint8))[0, 0]) for n in NAMES}


def name_pixels(pixels_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each pixel's basic colour term (index into NAMES), its L* and its chroma C*."""
    lab = to_lab(pixels_rgb)
    w = np.array([L_WEIGHT, 1.0, 1.0], np.float32)
    d = (((lab[:, None, :] - _LAB[None]) * w) ** 2).sum(-1)
    return _OWNER[d.argmin(1)], lab[:, 0], np.hypot(lab[:, 1], lab[:, 2])


def frame_white(image_rgb: np.ndarray) -> float:
    """L* of the frame's bright end (what reads as white in it), at least MIN_WHITE_L."""
    px = image_rgb[::4, ::4].reshape(-1, 3)
    if len(px) == 0:
        return 100.0
    return max(MIN_WHITE_L, float(np.percentile(to_lab(px)[:, 0], WHITE_PERCENTILE)))


def colour_share(pixels_rgb: np.ndarray, colour: str, shade: str | None = None,
                 white_l: float | None = None) -> float:
    """Share of the pixels ((N, 3) uint8 sRGB) a person would call `colour` (with `shade`: light | dark | None).
    The plain word fits its focus best: a light or dark pixel of that colour counts half (navy is blue, but "the
    blue coat" is more likely the mid-blue one). `white_l`: the frame's `frame_white` (None: absolute white)."""
    colour = ALIASES.get(colour, colour)
    if colour not in FOCAL_RGB:
        raise ValueError(f"unknown colour word {colour!r}; known: {', '.join(NAMES)}")
    px = pixels_rgb.reshape(-1, 3)
    if len(px) == 0:
        return 0.0
    if len(px) > MAX_PIXELS:  # an even subsample: the share is what is asked, not every pixel
        px = px[np.linspace(0, len(px) - 1, MAX_PIXELS).astype(int)]
    names, lightness, chroma = name_pixels(px)
    if white_l is not None:
        names = np.where((chroma < ACHROMATIC_C) & (lightness >= white_l - WHITE_RANGE), NAMES.index("white"), names)
    hit = names == NAMES.index(colour)
    focus = _FOCUS_L[colour]
    dark = lightness <= focus - SHADE_STEP
    if shade == "light":  # "light yellow": lighter than yellow's focus can get, but still in the top of the range
        return float((hit & (lightness >= min(focus + SHADE_STEP, 85.0))).mean())
    if shade == "dark":
        return float((hit & dark).mean())
    if colour in ("black", "white"):  # no shades of these
        return float(hit.mean())
    return float((hit * np.where(dark | (lightness >= focus + SHADE_STEP), 0.5, 1.0)).mean())
