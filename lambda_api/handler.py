"""Lambda entry point: ``lambda_api.handler.handler``. Settings are read and validated at init (cold start)."""

from __future__ import annotations

from lambda_api.adapter import build_handler

handler = build_handler()
