"""A child's environment drops what PyFlink's loopback mode left in this process, and nothing else."""

from __future__ import annotations

from pulse_local.processes import without_pyflink_runtime


def test_pyflink_run_time_variables_are_dropped_and_the_rest_kept() -> None:
    # given the variables a local PyFlink job leaves in its submitting process, and a user's own
    left_by_pyflink = {
        "PYFLINK_GATEWAY_DISABLED": "true",
        "_PYFLINK_CONN_INFO_PATH": "/tmp/x",
        "_PYTHON_WORKER_MEMORY_LIMIT": "1",
        "PYTHON_LOOPBACK_SERVER_ADDRESS": "localhost:1",
        "FLINK_HOME": "/venv/pyflink",
        "FLINK_CONF_DIR": "/venv/pyflink/conf",
        "SEMI_PERSISTENT_DIRECTORY": "/tmp",
        "BOOT_LOG_DIR": "/tmp/b",
        "TABLE_LOCAL_TIME_ZONE": "UTC",
        "python": "/venv/bin/python",
    }
    users = {"PATH": "/usr/bin", "AWS_REGION": "eu-west-1", "PULSE_STREAM_NAME": "s", "JAVA_HOME": "/jdk"}

    # then only the user's reach a child
    assert without_pyflink_runtime({**left_by_pyflink, **users}) == users
