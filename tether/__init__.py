"""tether: asynchronous black-box optimization on clusters.

A controller daemon runs the strategy and keeps the evaluation log; worker agents
connect over ZeroMQ and evaluate the objective.
"""

from tether.errors import ConfigError, TetherError
from tether.records import Evaluate, Kill, Record, RunView, Status, Terminate
from tether.space import Space

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Evaluate", "Kill", "Record", "RunView", "Space", "Status", "Terminate",
    "TetherError", "__version__",
]
