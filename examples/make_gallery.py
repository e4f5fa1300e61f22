"""Write docs/images/gallery_*.png: what NSA anomalies look like for a few presets.

Run:  python examples/make_gallery.py [--out docs/images] [--data ../shared/data/magnetic_tile/train/good]

Texture presets blend magnetic-tile images (real industrial data, if the folder
exists); the object-style presets without object masks blend scikit-image's
photographs; methods.png shows every method of nsa_augment.methods on one pair
of photographs.  Seeds are fixed, so the pictures are reproducible.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from nsa_augment import methods, synthesize
from nsa_augment.gallery import ROW_TITLES, example_row, grid

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "magnetic_tile" / "train" / "good"


def tiles(folder: Path, size=256, count=8):
    files = sorted(folder.glob("*.jpg"))[:: max(1, len(list(folder.glob("*.jpg"))) // count)][:count] if folder.is_dir() else []
    out = [cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA) for f in files]
    return out or photos(size)


def photos(size=256):
    from skimage import data

    return [cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            for img in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry())]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "images")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = {
        "mvtec/carpet": tiles(args.data),
        "mvtec/wood": tiles(args.data),
        "mvtec/cable": photos(),
        "mvtec/transistor": photos(),
    }
    for name, images in sets.items():
        rng = np.random.default_rng(2021)
        rows = []
        for i in range(4):
            dst, src = images[i % len(images)], images[(i + 1) % len(images)]
            image, label, info = synthesize(dst, src, name, rng)
            rows.append(example_row(src, dst, image, label))
        _save(args.out / f"gallery_{name.replace('/', '_')}.png", rows)
    # Every method on the same pair of images: one row each.
    dst, src = photos()[4], photos()[1]
    rows = []
    for name in methods.METHODS:
        image, label, _ = methods.generator(name, "mvtec/cable")(dst, src, np.random.default_rng(7))
        rows.append(example_row(src, dst, image, label))
    _save(args.out / "methods.png", rows, row_titles=list(methods.METHODS))
    print("rows of methods.png:", ", ".join(methods.METHODS))


def _save(path, rows, row_titles=None):
    image = grid(rows, ROW_TITLES, cell=160, row_titles=row_titles)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print("wrote", path)


if __name__ == "__main__":
    main()
