"""Train and evaluate the NSA paper's anomaly localisation model on MVTec-layout data.

This example is the ``nsa-augment train`` command (``nsa_augment.detection.train``); it stays for
scripts that call it by path, e.g. under torchrun:

    python examples/train_mvtec.py --root /data/mvtec --category bottle --out runs/bottle
    torchrun --nproc_per_node=4 examples/train_mvtec.py --root /data/mvtec --category all --out runs/all

See ``nsa-augment train --help`` and docs/training.md.
"""

import sys

from nsa_augment.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
