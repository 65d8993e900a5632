"""amuro: how pre-training and fine-tuning interact, measured over checkpoint series."""

import os

# Torch's OpenMP threads spin while idle; with two jobs sharing two cores that slowed training
# ~40x in our measurements (shared/docs/tinyworld-notes.md). Passive waiting costs ~20% at most.
# Must be set before torch is first imported, hence here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
