"""Build tooling: the runtimes Pulse deploys to, and the one way it vendors wheels for them.

:mod:`pulse_build.runtimes` states each runtime's version once; :mod:`pulse_build.vendoring`
installs pinned wheels for a runtime's platform (the Lambda bundle, ``cdk/lambda_bundle.py``, and
the Managed Flink zip, :mod:`pulse_build.flink_zip`, both use it).
"""
