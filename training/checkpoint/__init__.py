"""Checkpoint files: every format this package reads and writes, and the checks of what a file may ask for."""
