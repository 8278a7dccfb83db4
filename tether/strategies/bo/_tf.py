"""Lazy, quiet import of TensorFlow and GPflow.

Only :mod:`tether.strategies.bo` calls :func:`load`, and only when a BO strategy is
built, so ``import tether`` (and every worker) stays free of TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np

_LOADED: SimpleNamespace | None = None


@contextlib.contextmanager
def _silence_fd2() -> Iterator[None]:
    """Mute the C++ banners TensorFlow prints straight to file descriptor 2 on import.

    Recent TensorFlow builds log through absl before TF_CPP_MIN_LOG_LEVEL is read, so
    the environment variable alone does not keep the controller's terminal clean.
    Python-level exceptions still propagate (their traceback is printed after restore).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def load() -> SimpleNamespace:
    """Import TensorFlow, TFP and GPflow once, quietly; return them as ``ns.tf`` etc."""
    global _LOADED
    if _LOADED is not None:
        return _LOADED
    # Set only here, so nothing changes for a process that never builds a BO strategy.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # small GPs: the GPU only adds latency
    with _silence_fd2():
        import gpflow
        import tensorflow as tf
        import tensorflow_probability as tfp
    tf.get_logger().setLevel("ERROR")
    _limit_threads(tf)
    single_thread_blas()
    gpflow.config.set_default_float(np.float64)
    _LOADED = SimpleNamespace(tf=tf, tfp=tfp, gpflow=gpflow)
    return _LOADED


def single_thread_blas() -> int:
    """Ask every OpenBLAS loaded in this process (numpy's, scipy's) to use one thread.

    Measured on a loaded 2-core machine: an ask at 100 observations in 6-D took
    0.3–1.1 s with OpenBLAS's default threads (they spin against each other and against
    TensorFlow's pool) and 0.12–0.16 s with one. The controller process uses BLAS only
    for BO, so the process-wide setting is harmless. Returns how many libraries were set.
    """
    import ctypes

    done = 0
    try:
        with open("/proc/self/maps") as fh:
            paths = {ln.split()[-1] for ln in fh if "openblas" in ln.lower() and "/" in ln}
    except OSError:  # not Linux: leave the defaults
        return 0
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for sym in ("openblas_set_num_threads", "openblas_set_num_threads64_",
                    "scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(1)
                done += 1
                break
    return done


def _limit_threads(tf: Any) -> None:
    # Matrices here are at most a few hundred rows: thread hand-offs cost more than they
    # save, and the controller shares its cores with the event loop.
    with contextlib.suppress(RuntimeError):  # already initialised by the host program
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
