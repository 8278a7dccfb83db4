"""The one exception root of tether and its typed children.

Every error tether raises on purpose derives from :class:`TetherError`, so a caller
can catch the library's errors without catching programming mistakes.
"""

from __future__ import annotations


class TetherError(Exception):
    """Root of every error tether raises on purpose."""


class ConfigError(TetherError, ValueError):
    """A configuration file or command-line option is invalid (exit code 2)."""


class ProtocolError(TetherError):
    """A message broke the wire protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized or out of protocol."""


class LocalProtocolError(ProtocolError):
    """This side tried to send something the protocol does not allow."""


class StrategyError(TetherError):
    """A strategy was misused or proposed something invalid."""


class LogError(TetherError):
    """The evaluation log is unreadable or inconsistent."""


class EvaluationError(TetherError):
    """An objective failed; the message is what goes into the log."""
