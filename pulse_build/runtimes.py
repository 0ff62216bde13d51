"""The AWS runtimes Pulse deploys to, each version stated once."""

from __future__ import annotations

# Linux x86_64 wheels: what both Lambda (x86_64 architecture) and Managed Flink run.
WHEEL_PLATFORM = "manylinux2014_x86_64"

# The API's Lambda function (cdk/api.py) and the local Lambda runtime (pulse_local/lambda_runtime.py).
LAMBDA_PYTHON = "3.12"

# Managed Service for Apache Flink: the runtime environment and the Python it runs PyFlink jobs with.
MANAGED_FLINK_RUNTIME = "FLINK-2_2"
MANAGED_FLINK_PYTHON = "3.12"
