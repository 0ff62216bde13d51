"""Local running of Pulse: the embedded AWS emulator, the demo, and helpers tests share."""
