"""amuro: how pre-training and fine-tuning interact, measured over checkpoint series."""

__version__ = "0.1.0"
