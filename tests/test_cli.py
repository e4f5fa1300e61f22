"""nsa-augment preview: runs on bundled samples and folders, and fails with a message, never a traceback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from nsa_augment.cli import main


def test_console_script_help():
    exe = shutil.which("nsa-augment", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
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


def test_same_stems_in_different_folders_all_survive(tmp_path, tiles128):
    src = tmp_path / "in"
    for sub, i in (("a", 0), ("b", 1), ("a", 2)):
        (src / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(src / "a" / "x.png"), tiles128[0])
    cv2.imwrite(str(src / "a" / "x_2.png"), tiles128[1])  # the name a naive "x_<i>" renaming would clobber
    cv2.imwrite(str(src / "b" / "x.png"), tiles128[2])
    out = tmp_path / "out"
    assert main(["preview", str(src), "--out", str(out), "--size", "64"]) == 0
    names = sorted(p.name for p in (out / "images").glob("*.png"))
    assert len(names) == 3 and len(set(names)) == 3
    assert len(list((out / "labels").glob("*.png"))) == 3


def test_output_inside_the_input_folder_is_not_read_back(tmp_path, tiles128, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        cv2.imwrite(str(src / f"{i}.png"), tiles128[i])
    for _ in range(2):
        assert main(["preview", str(src), "--out", str(src / "preview"), "--size", "64"]) == 0
        assert "3 image/label pairs" in capsys.readouterr().out
    assert len(list((src / "preview" / "images").glob("*.png"))) == 3


def test_rows_zero_writes_no_gallery_and_says_so(tmp_path, capsys):
    assert main(["preview", "--out", str(tmp_path), "--limit", "2", "--size", "64", "--rows", "0"]) == 0
    assert "no gallery" in capsys.readouterr().out and not (tmp_path / "gallery.png").exists()


def test_interrupt_leaves_only_complete_files(tmp_path, monkeypatch, capsys):
    import nsa_augment.io as io

    real = io.replace_atomically
    count = []

    def interrupted(path, write):
        count.append(path)
        if len(count) == 3:  # the third file: part of it written, then Ctrl-C
            def partial(f):
                f.write(b"\x89PNG\r\n")
                raise KeyboardInterrupt
            return real(path, partial)
        return real(path, write)

    monkeypatch.setattr(io, "replace_atomically", interrupted)
    assert main(["preview", "--out", str(tmp_path), "--limit", "4", "--size", "64"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and err.strip().count("\n") == 0
    files = list(tmp_path.rglob("*.png"))
    assert len(files) == 2 and all(cv2.imread(str(f), cv2.IMREAD_UNCHANGED) is not None for f in files)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_ctrl_c_in_a_real_process(tmp_path):
    import os
    import signal
    import time

    # Enough inputs that the run cannot finish between the second label and the interrupt.
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(200):
        cv2.imwrite(str(inputs / f"n{i:03d}.png"), rng.integers(60, 200, (64, 64, 3), dtype=np.uint8))
    out = tmp_path / "out"
    exe = shutil.which("nsa-augment", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # A job started in the background (`cmd &` without job control, as some CI runners do) inherits
    # SIGINT as ignored, and Python then keeps it ignored: give the child a terminal's Ctrl-C.
    proc = subprocess.Popen([exe, "preview", str(inputs), "--out", str(out), "--size", "512", "--limit", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((out / "labels").glob("*.png"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err
    written = list(out.rglob("*.png"))
    assert 2 <= len(written) < 400 and all(cv2.imread(str(f), cv2.IMREAD_UNCHANGED) is not None for f in written)


def test_preview_runs_without_torch(tmp_path):
    """The main job needs no PyTorch; train says how to get it."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from nsa_augment.cli import main\n"
            f"assert main(['preview', '--limit', '2', '--size', '64', '--out', {str(tmp_path)!r}]) == 0\n"
            "assert main(['train', '--root', 'x', '--category', 'y']) == 2\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "needs PyTorch" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "gallery.png").exists()


def test_an_interrupt_inside_a_compiled_call_is_an_interrupt(tmp_path, monkeypatch, capsys):
    """Ctrl-C while Numba loads a cached kernel reaches Python as a SystemError caused by the interrupt."""
    import nsa_augment.cli as cli

    def compiled_call(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set") from interrupt

    monkeypatch.setattr(cli, "synthesize", compiled_call)
    assert main(["preview", "--out", str(tmp_path), "--limit", "2", "--size", "64"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    monkeypatch.setattr(cli, "synthesize", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # a bug is still a bug, never swallowed
        main(["preview", "--out", str(tmp_path), "--limit", "2", "--size", "64"])
