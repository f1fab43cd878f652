"""AIOS: one small daemon per device that keeps programs alive and runs scheduled,
triggered and idle-time jobs, with its state in SQLite."""

__version__ = "0.1.0"
