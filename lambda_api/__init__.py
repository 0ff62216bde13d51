"""Pulse inside the monitored API: request events, their publishers, the example app and its Lambda handler."""
