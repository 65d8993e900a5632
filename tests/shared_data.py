"""Where the real-data fixtures are: `shared/data` beside this checkout (the project's layout),
or the folder named by AMURO_SHARED_DATA. Tests that need them skip when neither exists."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("AMURO_SHARED_DATA")
            or Path(__file__).resolve().parents[2] / "shared" / "data")
