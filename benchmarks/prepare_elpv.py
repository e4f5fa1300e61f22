"""Write the ELPV solar-cell dataset in the MVTec AD folder layout, for ``nsa-augment train`` and the benchmark.

    pip install elpv-dataset
    python benchmarks/prepare_elpv.py --out bench_data        # -> bench_data/elpv/{train,test}/...

ELPV (Buerhop-Lutz et al. 2018; Deitsch et al. 2019): 2,624 electroluminescence images of solar
cells (300x300, 8-bit grayscale, mono- and polycrystalline) with a defect probability from experts:
0, 1/3, 2/3 or 1.  Image-level labels only (no masks), so pixel metrics are undefined.

Split (fixed, seed-free): normal = probability 0 (1,508 cells), every third of them (in the
package's order) goes to ``test/good`` (503), the rest to ``train/good`` (1,005); defective =
probability >= 2/3 (821 cells) in ``test/defect``.  The 295 cells at probability 1/3 are left out:
the experts themselves leaned towards "no defect", so they are neither clean training data nor
confident test positives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nsa_augment.io import write_image  # noqa: E402


def prepare(out: Path) -> Path:
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        raise SystemExit("prepare_elpv: the ELPV data ships in a package: pip install elpv-dataset") from None
    images, probs, types = load_dataset()
    base = out / "elpv"
    normal = np.flatnonzero(probs == 0)
    defective = np.flatnonzero(probs >= 0.5)
    test_normal = set(normal[::3].tolist())
    folders = {"train/good": [i for i in normal if i not in test_normal], "test/good": sorted(test_normal),
               "test/defect": defective.tolist()}
    for folder, indices in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for i in indices:
            path = base / folder / f"{i:04d}_{types[i]}.png"
            if not path.exists():
                write_image(path, images[i])
    counts = ", ".join(f"{folder} {len(ix)}" for folder, ix in folders.items())
    print(f"wrote {base}: {counts} (left out: {int((probs > 0).sum() - len(defective))} cells at probability 1/3)")
    return base


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench_data"), help="dataset root to write (default: %(default)s)")
    prepare(ap.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
