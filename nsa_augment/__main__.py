"""``python -m nsa_augment ...`` is the ``nsa-augment`` command (also under ``torchrun -m nsa_augment``)."""

import sys

from .cli import main

sys.exit(main())
