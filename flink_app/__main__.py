"""``python -m flink_app``: see :mod:`flink_app.cli`."""

import sys

from flink_app.cli import main

sys.exit(main())
