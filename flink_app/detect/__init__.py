"""Plain-Python anomaly detection: no Flink import, reused by the streaming job and backtest."""
