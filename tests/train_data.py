"""A small generated data set for the training tests: three classes that random conv features can
tell apart by colour and stripe direction."""
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {  # name -> (base colour RGB, stripes horizontal?)
    "red_horizontal": ((200, 60, 50), True),
    "green_vertical": ((60, 190, 70), False),
    "blue_horizontal": ((50, 80, 200), True),
}


def stripes(rng, colour, horizontal, size):
    """A size x size uint8 image: stripes of random period and phase in ``colour``, on a dark ground, noisy."""
    period, phase = rng.integers(4, 9), rng.integers(0, 8)
    t = np.arange(size)
    on = ((t + phase) // (period // 2)) % 2 == 0  # (size,)
    mask = on[:, None] if horizontal else on[None, :]
    img = np.where(np.broadcast_to(mask, (size, size))[..., None], np.array(colour), np.array((30, 30, 30)))
    img = img + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root, per_class=24, size=40, seed=0, classes=CLASSES):
    root = Path(root)
    rng = np.random.default_rng(seed)
    for name, (colour, horizontal) in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(stripes(rng, colour, horizontal, size)).save(root / name / f"{i:03d}.png")
    return root
