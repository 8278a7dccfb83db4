"""CURVE key files, permission checks, the allow-list and the refusal log (no sockets)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from tether import keys
from tether.cli import main
from tether.controller.settings import parse_config
from tether.errors import ConfigError, TetherError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def secrets_in(directory: Path) -> list[str]:
    """Every secret key (z85) under ``directory``."""
    out = []
    for p in directory.rglob("*" + keys.SECRET):
        text = p.read_text()
        out += [ln.split('"')[1] for ln in text.splitlines() if "secret-key" in ln]
    return out


# ------------------------------------------------------------------ generate
def test_generate_layout_and_modes(tmp_path: Path) -> None:
    d = tmp_path / "k"
    made = keys.generate(d)
    assert len(made) == 2
    assert (d / "controller.key").is_file() and (d / "controller.key_secret").is_file()
    assert (d / "authorized" / "worker.key").is_file()
    wdir = d / "workers" / "worker"
    assert (wdir / "worker.key_secret").is_file() and (wdir / "controller.key").is_file()
    if os.name == "posix":
        assert mode(d / "controller.key_secret") == 0o600
        assert mode(wdir / "worker.key_secret") == 0o600
        assert mode(d) & 0o077 == 0 and mode(d / "workers") & 0o077 == 0
    # the worker's copy of the controller's key is the controller's key
    assert (keys.load_client(d).server_public == keys.load_server(d)[0])
    assert keys.load_client(d).where == wdir  # a single pair is found from DIR itself
    # the allow-list holds exactly the worker's public key
    allow = keys.AllowList(d / "authorized")
    allow.refresh()
    assert allow.keys == {keys.load_client(d).public: "worker"}


def test_generate_never_overwrites_and_adds_workers(tmp_path: Path) -> None:
    d = tmp_path / "k"
    keys.generate(d, workers=3)
    server = (d / "controller.key_secret").read_text()
    with pytest.raises(ConfigError, match="already holds a controller key pair"):
        keys.generate(d)
    keys.generate(d, add_worker="node-7")
    assert (d / "controller.key_secret").read_text() == server
    with pytest.raises(ConfigError, match="already has a worker key named 'node-7'"):
        keys.generate(d, add_worker="node-7")
    names = sorted(p.name for p in (d / "workers").iterdir())
    assert names == ["node-7", "worker-1", "worker-2", "worker-3"]
    with pytest.raises(ConfigError, match="holds 4 worker key pairs"):
        keys.load_client(d)  # ambiguous: the worker must name its pair
    assert keys.load_client(d / "workers" / "worker-2").where.name == "worker-2"
    pubs = {keys.load_client(d / "workers" / n).public for n in names}
    assert len(pubs) == 4  # distinct pairs


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "controller", "x" * 65, "sp ace"])
def test_bad_worker_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="bad worker key name"):
        keys.generate(tmp_path / "k", add_worker=name)
    assert not (tmp_path / "k" / "workers").exists() or not any((tmp_path / "k" / "workers").iterdir())


def test_fingerprint_is_stable_short_and_not_the_key(tmp_path: Path) -> None:
    keys.generate(tmp_path / "k")
    pub = keys.load_client(tmp_path / "k").public
    fp = keys.fingerprint(pub)
    assert fp == keys.fingerprint(pub.decode()) and fp.startswith("sha256:") and len(fp) == 23
    assert pub.decode() not in fp


# ------------------------------------------------------------------ permissions
@posix_only
def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "k"
    keys.generate(d)
    secret = d / "workers" / "worker" / "worker.key_secret"
    for bad in (0o644, 0o640, 0o604, 0o660):
        secret.chmod(bad)
        with pytest.raises(ConfigError, match=f"accessible by others \\(mode {bad:04o}\\)"):
            keys.load_client(d)
    secret.chmod(0o400)  # read-only for the owner is fine
    keys.load_client(d)
    (d / "controller.key_secret").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        keys.load_server(d)


@posix_only
def test_allow_list_writable_by_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "k"
    keys.generate(d)
    (d / "authorized").chmod(0o775)
    with pytest.raises(ConfigError, match="writable by others"):
        keys.load_server(d)
    allow = keys.AllowList(d / "authorized")
    allow.refresh()
    assert allow.keys == {}  # if it becomes writable while running: nobody is let in
    (d / "authorized").chmod(0o755)
    assert allow.refresh() and len(allow.keys) == 1


@posix_only
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to chown")
def test_secret_of_another_user_is_refused(tmp_path: Path) -> None:
    keys.generate(tmp_path / "k")
    secret = tmp_path / "k" / "workers" / "worker" / "worker.key_secret"
    os.chown(secret, 4242, -1)
    with pytest.raises(ConfigError, match="belongs to another user"):
        keys.load_client(tmp_path / "k")


@posix_only
@pytest.mark.parametrize("who", ["worker", "controller"])
def test_cli_exits_2_with_one_line(tmp_path: Path, who: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "k"
    keys.generate(d)
    secret = d / "workers" / "worker" / "worker.key_secret" if who == "worker" else \
        d / "controller.key_secret"
    secret.chmod(0o644)
    if who == "worker":
        argv = ["worker", "--connect", "tcp://127.0.0.1:9", "--python", "tether.problems:trivial",
                "--keys", str(d)]
    else:
        argv = ["controller", "--bind", "tcp://127.0.0.1:0", "--log", str(tmp_path / "r.jsonl"),
                "--keys", str(d)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "accessible by others" in err[0] and str(secret) in err[0]
    assert not (tmp_path / "r.jsonl").exists()  # refused before anything started


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "k"
    assert main(["keys", "generate", str(d), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "worker-1" in out and "worker-2" in out and "sha256:" in out
    for s in secrets_in(d):
        assert s not in out
    assert main(["keys", "generate", str(d)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["keys", "generate", str(d), "--add-worker", "gpu-1"]) == 0
    assert (d / "authorized" / "gpu-1.key").is_file()


def test_missing_or_broken_key_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        keys.load_client(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no worker key pair"):
        keys.load_client(tmp_path / "empty")
    d = tmp_path / "k"
    keys.generate(d)
    (d / "workers" / "worker" / "controller.key").write_text('curve\n    public-key = "short"\n')
    with pytest.raises(ConfigError, match="not a 40-character z85 key"):
        keys.load_client(d)
    (d / "workers" / "worker" / "controller.key").unlink()
    with pytest.raises(TetherError, match="cannot read key file"):
        keys.load_client(d)


# ------------------------------------------------------------------ allow-list
def test_allow_list_follows_the_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "k"
    keys.generate(d, workers=2)
    auth = d / "authorized"
    allow = keys.AllowList(auth)
    assert allow.refresh() and set(allow.keys.values()) == {"worker-1", "worker-2"}
    assert not allow.refresh()  # unchanged: not re-read
    w1 = keys.load_client(d / "workers" / "worker-1").public
    (auth / "worker-1.key").rename(tmp_path / "worker-1.key")
    assert allow.lookup(w1) is None  # a removed key is refused at the next handshake
    (tmp_path / "worker-1.key").rename(auth / "renamed.key")
    assert allow.lookup(w1) == "renamed"
    # replaced in place under the same name: still noticed
    keys.generate(tmp_path / "other")
    other = keys.load_client(tmp_path / "other").public
    (auth / "renamed.key").write_text((tmp_path / "other" / "authorized" / "worker.key").read_text())
    os.utime(auth / "renamed.key", ns=(1, 1))
    assert allow.refresh()  # the handler's periodic scan
    assert allow.lookup(w1) is None and allow.lookup(other) == "renamed"
    (auth / "junk.key").write_text("not a key\n")
    with caplog.at_level(logging.WARNING, logger="tether.keys"):
        assert allow.refresh()
    assert "junk.key" in caplog.text and len(allow.keys) == 2
    assert allow.refresh(force=True)  # SIGHUP: re-read even if unchanged


# ------------------------------------------------------------------ refusal log
def test_refusals_are_logged_once_per_address_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    rl = keys.RefusalLog(interval=60.0, clock=lambda: now[0], max_peers=3)
    with caplog.at_level(logging.WARNING, logger="tether.keys"):
        assert rl.refused("10.0.0.1", "unknown_key", "key sha256:aa")
        assert not rl.refused("10.0.0.1", "unknown_key", "key sha256:aa")
        assert rl.refused("10.0.0.2", "handshake", "no CURVE")  # another address: logged
        now[0] += 59.0
        assert not rl.refused("10.0.0.1", "unknown_key", "key sha256:aa")
        now[0] += 1.0
        assert rl.refused("10.0.0.1", "unknown_key", "key sha256:aa")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "2 more refused since the last report" in lines[2]
    assert rl.counts == {"unknown_key": 4, "handshake": 1}
    for i in range(10):  # a flood of addresses: memory stays bounded
        rl.refused(f"10.1.0.{i}", "unknown_key", "x")
    assert len(rl._last) <= 3


# ------------------------------------------------------------------ open warning, config
@pytest.mark.parametrize(("endpoint", "warn"), [
    ("tcp://127.0.0.1:5555", False), ("tcp://127.3.0.1:5555", False), ("tcp://localhost:5", False),
    ("tcp://[::1]:5555", False), ("ipc:///tmp/x", False), ("inproc://x", False),
    ("tcp://0.0.0.0:5555", True), ("tcp://*:5555", True), ("tcp://10.1.2.3:5555", True),
    ("tcp://eth0:5555", True), ("tcp://login1.cluster:5555", True), ("tcp://[::]:5555", True),
])
def test_open_warning(endpoint: str, warn: bool) -> None:
    msg = keys.open_warning(endpoint, None)
    assert (msg is not None) == warn
    if msg:
        assert "\n" not in msg and endpoint in msg and "--keys" in msg
    assert keys.open_warning(endpoint, "keys/") is None


def test_run_keys_in_config() -> None:
    cfg = parse_config({"space": {"x": [0, 1]}, "run": {"keys": "keys/"}})
    assert cfg.run.keys == "keys/"
    assert cfg.with_overrides(keys="other").run.keys == "other"
    assert parse_config({"space": {"x": [0, 1]}}).run.keys is None
    with pytest.raises(ConfigError, match="keys must be a string"):
        parse_config({"space": {"x": [0, 1]}, "run": {"keys": 3}})


@posix_only
def test_worker_key_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    """Whoever can replace controller.key there chooses the controller the worker trusts."""
    keys.generate(tmp_path / "k")
    wdir = tmp_path / "k" / "workers" / "worker"
    wdir.chmod(0o777)
    with pytest.raises(ConfigError, match=r"key directory .* is writable by others"):
        keys.load_client(wdir)
    wdir.chmod(0o755)
    assert keys.load_client(wdir).where == wdir


@posix_only
def test_public_key_writable_by_others_is_refused_or_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "k"
    keys.generate(d, workers=2)
    (d / "workers" / "worker-1" / "controller.key").chmod(0o666)
    with pytest.raises(ConfigError, match=r"^key file .* is writable by others: run chmod go-w"):
        keys.load_client(d / "workers" / "worker-1")
    (d / "authorized" / "worker-2.key").chmod(0o646)
    allow = keys.AllowList(d / "authorized")
    with caplog.at_level(logging.WARNING, logger="tether.keys"):
        allow.refresh()
    assert set(allow.keys.values()) == {"worker-1"} and "worker-2.key" in caplog.text
