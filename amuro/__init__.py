"""amuro: how pre-training and fine-tuning interact, measured over checkpoint series."""

__version__ = "0.1.0"

import os as _os

if _os.environ.get("AMURO_ZYGOTE"):  # `python -m amuro.<step>` under a zygote (amuro/zygote.py)
    from amuro.zygote import delegate as _delegate

    _delegate()
