"""A child process's environment without what running PyFlink left in this one.

PyFlink runs a local job's Python functions inside the process that submitted it (loopback mode)
and leaves its run-time variables in ``os.environ``: among them ``PYFLINK_GATEWAY_DISABLED=true``,
which makes any PyFlink program started from that environment refuse to start its own JVM ("It's
launching the PythonGatewayServer during Python UDF execution"), and ``FLINK_HOME``/``FLINK_*_DIR``
pointing at this interpreter's PyFlink. A process that starts another PyFlink program (a test
running the demo, the local Managed Flink emulation) gives it this environment instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Set by PyFlink's launcher and its loopback Python worker (pyflink.java_gateway, pyflink_gateway_server,
# the Beam worker pool), never by a user.
PYFLINK_PREFIXES = ("PYFLINK_", "_PYFLINK_", "_PYTHON_WORKER", "FLINK_")
PYFLINK_VARIABLES = frozenset(
    ("PYTHON_LOOPBACK_SERVER_ADDRESS", "SEMI_PERSISTENT_DIRECTORY", "BOOT_LOG_DIR", "TABLE_LOCAL_TIME_ZONE", "python")
)


def without_pyflink_runtime(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) less the variables PyFlink set while running a job here."""
    source = os.environ if environ is None else environ
    return {
        key: value
        for key, value in source.items()
        if not key.startswith(PYFLINK_PREFIXES) and key not in PYFLINK_VARIABLES
    }
