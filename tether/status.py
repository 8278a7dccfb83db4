"""``tether status``: a read-only live view of a running controller.

It connects like a worker (same endpoint, same keys) but never says hello, so it is never
given work: it sends ``status_query`` and prints the ``status`` answer.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import zmq

from tether.addressfile import read_address
from tether.errors import ConfigError, TetherError
from tether.protocol import codec
from tether.protocol import messages as m

#: exit status when no controller answered
EXIT_NO_CONTROLLER = 3


class NoAnswer(TetherError):
    pass


def query(endpoint: str, timeout: float = 5.0, keys: str | None = None,
          context: zmq.Context[Any] | None = None) -> dict[str, Any]:
    """Ask the controller at ``endpoint`` for a status snapshot."""
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, codec.MAX_MESSAGE)
    if keys:
        from tether.keys import configure_client

        configure_client(sock, keys)
    try:
        sock.connect(endpoint)
        sock.send(codec.encode(m.StatusQuery()))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sock.poll(int(left * 1000) + 1):
                break
            msg = codec.decode(sock.recv(), m.CONTROLLER_MESSAGES)
            if isinstance(msg, m.Status):
                return msg.data
            if isinstance(msg, m.Terminate):
                return {"finished": msg.reason or "run over", "workers": []}
        raise NoAnswer(f"no controller answered at {endpoint} within {timeout:g} s")
    finally:
        sock.close(0)


def endpoint_from(where: str) -> str:
    """An endpoint, or the first line of an address file."""
    if "://" in where:
        return where
    try:
        return read_address(where).endpoint or ""
    except OSError as exc:
        raise ConfigError(f"status: {where} is neither tcp://HOST:PORT nor a readable "
                          f"address file ({exc.strerror})") from None


def render(s: dict[str, Any]) -> str:
    """The human-readable view."""
    if s.get("finished") and "budget" not in s:
        return f"the run is over ({s['finished']})"
    lines = [_headline(s)]
    if s.get("best_value") is not None:
        point = ", ".join(f"{k}={v:.6g}" for k, v in (s.get("best_x") or {}).items())
        lines.append(f"best      {s['best_value']:.6g} (eval {s.get('best_eval_id')}) at {point}")
    workers = s.get("workers", [])
    lines.append(f"workers   {s.get('n_workers', len(workers))} connected, "
                 f"{s.get('slots', 0)} slots, {s.get('free_slots', 0)} free")
    for w in workers:
        run = ", ".join(f"#{r['eval_id']} {r['seconds']:.0f} s" if r.get("seconds") is not None
                        else f"#{r['eval_id']}" for r in w.get("running", []))
        flag = " (draining)" if w.get("draining") else ""
        heard = f", heard {w['heard']:.1f} s ago" if w.get("heard") is not None else ""
        lines.append(f"  {w['name']:<24} {len(w.get('running', []))}/{w['slots']} busy"
                     f"{flag}{heard}{': ' + run if run else ''}")
    fails = s.get("recent_failures", [])
    if fails:
        lines.append(f"recent failures ({s.get('failed', len(fails))} in all)")
        lines += [f"  #{f['eval_id']} on {f['worker']}: {f['error']}" for f in fails[-5:]]
    if s.get("dropped"):
        why = ", ".join(f"{k}: {n}" for k, n in sorted(s.get("refused", {}).items()))
        lines.append(f"refused   {s['dropped']} messages ({why})")
    return "\n".join(lines)


def _headline(s: dict[str, Any]) -> str:
    state = f"finished ({s['finished']})" if s.get("finished") else "running"
    rate = s.get("rate_per_hour", 0.0)
    left = s["budget"] - s["completed"]
    eta = f", ~{left / rate:.1f} h left at this rate" if rate > 0 and left > 0 else ""
    return (f"{state}: {s['completed']}/{s['budget']} completed, {s['in_flight']} in flight "
            f"({s.get('queued', 0)} queued), {s.get('failed', 0)} failed, "
            f"{rate:.0f}/h over {s.get('elapsed', 0):.0f} s{eta}; strategy {s.get('strategy')}")


def run_status(where: str, keys: str | None, as_json: bool, watch: float | None,
               timeout: float) -> int:
    endpoint = endpoint_from(where)
    while True:
        try:
            data = query(endpoint, timeout, keys)
        except NoAnswer as exc:
            print(f"tether status: {exc}", file=sys.stderr, flush=True)
            return EXIT_NO_CONTROLLER
        print(json.dumps(data) if as_json else render(data), flush=True)
        if not watch:
            return 0
        print("", flush=True)
        time.sleep(watch)  # the refresh period the user asked for, not a synchronisation
