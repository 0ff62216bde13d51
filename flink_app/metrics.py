"""The job's own metrics: names shared by the operator that reports them, the tests that read them and
the CDK stack that alarms on them (no Flink import, so the stack can import it).

Managed Flink publishes the metrics of the ``kinesisanalytics`` group to CloudWatch
(``AWS/KinesisAnalytics``). Counters are totals since the job (re)started; each side-record counter
has a rate beside it (a meter, per second over the last minute), which is what an alarm watches:
a total that stays above zero would keep an alarm raised until the next restart.
"""

from __future__ import annotations

METRIC_GROUP = "kinesisanalytics"

REJECTED = "rejectedRecords"  # records that are not usable events (also per reason, in a "reason" group)
LATE = "lateRecords"  # usable events that arrived after their windows had closed
RATE_SUFFIX = "PerSecond"
REJECTED_RATE = REJECTED + RATE_SUFFIX
LATE_RATE = LATE + RATE_SUFFIX
RATE_WINDOW_S = 60

# Records the event parse function (flink_app/event_columns.py, EventFields.java) parsed: one per
# record read, rejected ones included.
PARSED = "parsedRecords"

WINDOWS_EVALUATED = "windowsEvaluated"
ANOMALIES_DETECTED = "anomaliesDetected"
SILENCE_CHECKS = "silenceChecks"
