"""An external-program objective following the conventions of DESIGN.md.

usage: objective.py MODE X0 X1
MODE: value (prints tether:value), last (prints a bare float last), partial (streams
partials first), exit3 (exits 3 after writing to stderr), novalue (prints nothing useful),
nan (prints tether:value nan), env (value from TETHER_PARAMS, checks TETHER_EVAL_ID),
stubborn (when x0 < 0.3: ignores SIGTERM, starts a grandchild, hangs; writes both pids
to $TETHER_TEST_PIDS).
"""

import json
import os
import signal
import subprocess
import sys
import time

mode, x0, x1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
value = (x0 - 0.3) ** 2 + (x1 - 0.3) ** 2
if mode == "value":
    print("some chatter")
    print(f"tether:value {value!r}")
elif mode == "last":
    print("chatter")
    print(repr(value))
elif mode == "partial":
    for k in range(3):
        print(f"tether:partial {value + 3 - k!r}", flush=True)
    print(f"tether:value {value!r}")
elif mode == "exit3":
    print("doomed")
    print("something went wrong in the solver", file=sys.stderr)
    sys.exit(3)
elif mode == "novalue":
    print("I forgot to print a number")
elif mode == "nan":
    print("tether:value nan")
elif mode == "env":
    params = json.loads(os.environ["TETHER_PARAMS"])
    assert os.environ["TETHER_EVAL_ID"].isdigit()
    assert params == {"x0": x0, "x1": x1}, (params, x0, x1)
    print(f"tether:value {(params['x0'] - 0.3) ** 2 + (params['x1'] - 0.3) ** 2!r}")
elif mode == "stubborn":
    if x0 < 0.3:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        with open(os.environ["TETHER_TEST_PIDS"], "a") as fh:
            fh.write(f"{os.getpid()} {child.pid}\n")
        while True:
            time.sleep(0.05)
    print(f"tether:value {value!r}")
