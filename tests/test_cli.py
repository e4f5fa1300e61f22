"""nsa-augment preview: runs on bundled samples and folders, and fails with a message, never a traceback."""

import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from nsa_augment.cli import main


def test_console_script_help():
    exe = shutil.which("nsa-augment")
    cmd = [exe, "preview", "--help"] if exe else [sys.executable, "-m", "nsa_augment.cli", "preview", "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "--preset" in out and "gallery.png" in out and "scikit-image" in out
    assert exe, "the nsa-augment console script is not installed"


def test_preview_on_bundled_samples(tmp_path):
    assert main(["preview", "--out", str(tmp_path), "--limit", "3", "--size", "96"]) == 0
    gallery = cv2.imread(str(tmp_path / "gallery.png"))
    assert gallery is not None and gallery.shape[0] > 3 * 96
    labels = sorted((tmp_path / "labels").glob("*.png"))
    assert [p.stem for p in labels] == ["brick", "grass", "gravel"]
    assert any(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).max() > 0 for p in labels)


def test_preview_on_a_folder_with_mixed_files(tmp_path, tiles128):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    cv2.imwrite(str(src / "a.png"), tiles128[0])
    cv2.imwrite(str(src / "sub" / "b.jpg"), cv2.cvtColor(tiles128[1], cv2.COLOR_RGB2GRAY)[:100])
    cv2.imwrite(str(src / "c.png"), tiles128[2][:, :90])
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    assert main(["preview", str(src), "--out", str(out), "--preset", "mvtec/carpet", "--label", "binary"]) == 0
    names = sorted(p.name for p in (out / "labels").glob("*.png"))
    assert names == ["a.png", "b.png", "c.png"]
    lab = cv2.imread(str(out / "labels" / "b.png"), cv2.IMREAD_UNCHANGED)
    assert lab.shape == (200, 256) and set(np.unique(lab)) <= {0, 255}


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "no image files found"),
    (lambda p: None, "neither an image file nor a folder"),
    (lambda p: (p.mkdir(), (p / "x.png").write_bytes(b"junk")), "none of the input files could be read"),
])
def test_preview_errors_are_messages(tmp_path, capsys, make, message):
    target = tmp_path / "input"
    make(target)
    assert main(["preview", str(target), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_preview_bad_preset_is_a_message(tmp_path, capsys):
    assert main(["preview", "--preset", "mvtec/nope", "--out", str(tmp_path)]) == 2
    assert "unknown preset" in capsys.readouterr().err
