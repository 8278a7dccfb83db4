"""The in-process controllers, importable from one place (each lives in its own module)."""

from tether.controller.inprocess import InProcessController, Objective, RunResult
from tether.controller.pool import EvaluationKilled, PoolController
from tether.controller.serial import SerialController
from tether.controller.simulated import SimulatedController

__all__ = ["EvaluationKilled", "InProcessController", "Objective", "PoolController",
           "RunResult", "SerialController", "SimulatedController"]
