"""Hand-measured target boxes [x0, y0, x1, y1] on Debian darknet's sample photos, and the mask check."""
import numpy as np

BOXES = {
    ("dog.jpg", "truck"): (465, 75, 695, 170),
    ("dog.jpg", "dog"): (130, 220, 310, 545),
    ("dog.jpg", "bicycle"): (125, 135, 570, 420),
    ("person.jpg", "horse"): (405, 140, 600, 345),
    ("person.jpg", "person"): (190, 98, 275, 375),
    ("person.jpg", "dog"): (62, 262, 202, 345),
}


def mask_in_box(mask: np.ndarray, box, *, inside: float = 0.8, cover: float = 0.3) -> tuple[float, float]:
    """Most mask pixels inside the target box, and a fair share of the box covered."""
    x0, y0, x1, y1 = box
    total = int(mask.sum())
    assert total > 0, "mask is empty"
    within = int(mask[y0:y1, x0:x1].sum())
    frac_inside, frac_cover = within / total, within / ((x1 - x0) * (y1 - y0))
    assert frac_inside >= inside, f"only {frac_inside:.0%} of the mask lies inside {box}"
    assert frac_cover >= cover, f"mask covers only {frac_cover:.0%} of {box}"
    return frac_inside, frac_cover
