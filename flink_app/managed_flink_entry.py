"""Managed Service for Apache Flink entry point: the zip's ``main.py`` (run option ``python``).

Not the CDK app (that is ``app.py`` at the repository root); :mod:`pulse_build.flink_zip` copies
this file to the zip's root as ``main.py``.

The same code as ``python -m flink_app run``: configuration from the application properties
(``/etc/flink/application_properties.json``), or from ``--config FILE`` locally.
"""

import sys
from pathlib import Path

# Vendored pure-Python dependencies of the zip (pydantic, ...) for this, the client process.
_DEPS = Path(__file__).resolve().parent / "deps"
if _DEPS.is_dir():
    sys.path.insert(0, str(_DEPS))

from flink_app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
