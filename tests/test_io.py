"""Reading files without losing bits: 16-bit PNG/TIFF, DICOM (pydicom's test files), NIfTI (nibabel's)."""

import os

import cv2
import numpy as np
import pytest

from nsa_augment import presets, synthesize
from nsa_augment.cli import main as cli_main
from nsa_augment.io import as_image_dtype, find_images, load_image, load_volume, write_image

pydicom_data = pytest.importorskip("pydicom.data", reason="the medical extra is part of the test set-up")
nibabel_testing = pytest.importorskip("nibabel.testing")
CT = pydicom_data.get_testdata_file("CT_small.dcm")
MR = pydicom_data.get_testdata_file("MR_small.dcm")
BRAIN = os.path.join(nibabel_testing.data_path, "example4d.nii.gz")
ANATOMICAL = os.path.join(nibabel_testing.data_path, "anatomical.nii")


def test_twelve_bit_png_keeps_every_bit(tmp_path, tiles128):
    twelve = tiles128[0][:, :, 0].astype(np.uint16) * 16 + 7  # 7..4087
    cv2.imwrite(str(tmp_path / "x.png"), twelve)
    back = load_image(tmp_path / "x.png")
    assert back.dtype == np.uint16 and np.array_equal(back, twelve)  # the old reader divided by 257: 0..15


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint16])
def test_tiff_keeps_its_dtype(tmp_path, dtype):
    data = (np.arange(40 * 30).reshape(40, 30) * 3 - 1000).astype(dtype) if dtype != np.uint16 else \
        (np.arange(1200).reshape(40, 30) * 50).astype(np.uint16)
    write_image(tmp_path / "x.tif", data)
    back = load_image(tmp_path / "x.tif")
    assert back.dtype == dtype and np.array_equal(back, data)


def test_dicom_ct_in_hounsfield_units():
    ct = load_image(CT)
    assert ct.dtype == np.int16 and ct.shape == (128, 128)
    assert ct.min() == 128 - 1024 and ct.max() == 2191 - 1024  # stored values + RescaleIntercept -1024
    mr = load_image(MR)
    assert mr.dtype == np.int16 and mr.shape == (64, 64) and mr.max() == 2145


def test_nifti_volumes():
    brain = load_volume(BRAIN, frame=0)
    assert brain.dtype == np.int16 and brain.shape == (24, 96, 128) and brain.max() == 1162
    assert not np.array_equal(brain, load_volume(BRAIN, frame=1))
    anatomical = load_volume(ANATOMICAL)
    assert anatomical.shape == (25, 41, 33) and anatomical.dtype == np.int16 and anatomical.dtype.isnative


@pytest.mark.parametrize("call, message", [
    (lambda: load_volume(BRAIN), "is 4-D .* pass frame=0..1"),
    (lambda: load_volume(BRAIN, frame=2), "frame must lie in 0..1"),
    (lambda: load_image(BRAIN), "is a volume: read it with nsa_augment.io.load_volume"),
    (lambda: load_volume(CT), "single 2-D image"),
    (lambda: load_image("missing.png"), "no such file"),
    (lambda: load_volume(__file__), "expected NIfTI"),
])
def test_reading_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_missing_reader_says_how_to_get_it(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_pydicom(name, *args):
        if name.startswith("pydicom"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_pydicom)
    with pytest.raises(ValueError, match=r'needs pydicom: pip install "nsa-augment\[medical\]"'):
        load_image(CT)


def test_as_image_dtype():
    assert as_image_dtype(np.array([0, 300], np.int32)).dtype == np.int16
    assert as_image_dtype(np.array([0, 40000], np.int32)).dtype == np.uint16
    assert as_image_dtype(np.array([0, 70000], np.int32)).dtype == np.float32
    assert as_image_dtype(np.array([-5.0, 7.0])).dtype == np.int16
    assert as_image_dtype(np.array([0.5, 7.0])).dtype == np.float32
    assert as_image_dtype(np.array([1, 2], ">i2")).dtype.isnative


def test_a_16_bit_ct_slice_gets_a_label_with_its_preset_and_keeps_its_dtype():
    ct = load_image(CT)
    other = np.ascontiguousarray(ct[:, ::-1])
    labelled = 0
    for seed in range(6):
        image, label, plan = synthesize(ct, other, "medical/ct", np.random.default_rng(seed))
        assert image.dtype == np.int16 and image.shape == ct.shape
        labelled += label.max() > 0
        changed = image != ct
        assert not changed[label == 0].all()
    assert labelled >= 4
    cfg = presets.get("medical/ct")
    assert cfg.intensity_range == (-1000.0, 1000.0) and cfg.object_masks is not None


def test_preview_on_16_bit_and_dicom_files(tmp_path, tiles128):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"xray{i}.png"), tiles128[i][:, :, 0].astype(np.uint16) * 16)  # 12-bit data
    out = tmp_path / "out"
    assert cli_main(["preview", str(src), "--out", str(out), "--preset", "chestxray", "--size", "0"]) == 0
    results = sorted((out / "images").glob("*.png"))
    assert len(results) == 3 and all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype == np.uint16 for p in results)
    assert sum(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).max() > 0 for p in (out / "labels").glob("*.png")) >= 2
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    for name in ("a", "b"):
        (dicom / f"{name}.dcm").write_bytes(open(CT, "rb").read())
    assert cli_main(["preview", str(dicom), "--out", str(tmp_path / "ct"), "--preset", "medical/ct", "--size", "0"]) == 0
    result = load_image(tmp_path / "ct" / "images" / "a.tif")
    assert result.dtype == np.int16 and result.shape == (128, 128)
    assert find_images(dicom) == sorted(dicom.glob("*.dcm"))
