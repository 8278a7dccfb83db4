"""The evaluation log: an append-only JSON Lines journal written by the controller alone."""

from tether.log.journal import JournalWriter, MemoryJournal, read_events, repair

__all__ = ["JournalWriter", "MemoryJournal", "read_events", "repair"]
