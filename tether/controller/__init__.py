"""Controllers: the pure core, the ZeroMQ daemon and the in-process controllers."""
