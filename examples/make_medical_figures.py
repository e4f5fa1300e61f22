"""The pictures of docs/medical.md: NSA on real 16-bit CT/MR slices and in a real 3-D brain MRI.

    pip install "nsa-augment[medical]"
    python examples/make_medical_figures.py --out docs/images

The data ship inside the readers' packages (no download): pydicom's CT_small.dcm (128x128 CT,
int16, HU after the rescale intercept) and MR_small.dcm (64x64 MR, int16), and nibabel's
example4d.nii.gz (a 128x96x24 int16 brain MRI with 2 frames, frame 1 serving as the source).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from nsa_augment import synthesize, synthesize_volume
from nsa_augment.gallery import grid, heatmap, outline, to_rgb8
from nsa_augment.io import load_image, load_volume, write_image


def slices_2d(out: Path) -> Path:
    from pydicom.data import get_testdata_file

    rows, names = [], []
    ct = load_image(get_testdata_file("CT_small.dcm"))
    mr = load_image(get_testdata_file("MR_small.dcm"))
    for name, image, source, preset, window, seed in (
        ("CT, medical/ct", ct, np.ascontiguousarray(ct[::-1]), "medical/ct", (-1000.0, 1000.0), 4),
        ("CT, medical/ct", ct, np.ascontiguousarray(ct[:, ::-1]), "medical/ct", (-1000.0, 1000.0), 11),
        ("MR, chestxray", mr, np.ascontiguousarray(mr[::-1, ::-1]), "chestxray", None, 2),
    ):
        result, label, plan = synthesize(image, source, preset, np.random.default_rng(seed))
        shown = to_rgb8(result, window or (float(image.min()), float(image.max())))
        rows.append([to_rgb8(source, window), to_rgb8(image, window), shown, outline(shown, label), heatmap(label)])
        names.append(name)
    path = out / "medical_slices.png"
    write_image(path, grid(rows, ["source", "destination", "result", "label outline", "label"], cell=200,
                           row_titles=names))
    return path


def volume_3d(out: Path) -> Path:
    from nibabel.testing import data_path

    brain = load_volume(os.path.join(data_path, "example4d.nii.gz"), frame=0)
    other = load_volume(os.path.join(data_path, "example4d.nii.gz"), frame=1)
    window = (float(brain.min()), float(brain.max()))
    rows, names = [], []
    for seed in (1, 9):
        volume, label, plan = synthesize_volume(brain, other, "medical/brain-mri", np.random.default_rng(seed))
        z0, z1, y0, y1, x0, x1 = plan.patches[0].dst_box
        z, y, x = (z0 + z1) // 2, (y0 + y1) // 2, (x0 + x1) // 2
        for axis_name, cut in (("axial", np.s_[z]), ("coronal", np.s_[:, y]), ("sagittal", np.s_[:, :, x])):
            before, after, lab = brain[cut], volume[cut], label[cut]
            if axis_name != "axial":  # slices run along the short axis: stretch for display, label alike
                before, after, lab = (np.repeat(a, 4, axis=0) for a in (before, after, lab))
            shown = to_rgb8(after, window)
            rows.append([to_rgb8(before, window), shown, outline(shown, lab), heatmap(lab)])
            names.append(f"seed {seed} {axis_name}")
    path = out / "medical_volume.png"
    write_image(path, grid(rows, ["destination slice", "result slice", "label outline", "label"], cell=200,
                           row_titles=names))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (slices_2d(args.out), volume_3d(args.out)):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
