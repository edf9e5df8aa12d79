"""The shared (Redis) backend against a real redis-server: wall-clock by nature."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors._limits import Limits, RateLimit

REDIS_SERVER = "/usr/bin/redis-server"
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throw-away redis-server on 127.0.0.1: no config file, nothing saved."""
    server = (
        REDIS_SERVER if os.path.exists(REDIS_SERVER) else shutil.which("redis-server")
    )
    if server is None:
        pytest.fail(
            f"{REDIS_SERVER} is missing: the shared-quota tests need a real Redis "
            "(apt-get install redis-server)"
        )
    port = _free_port()
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


WORKER = textwrap.dedent(
    """
    import sys, time
    import trio
    from actors._limits import Limits, RateLimit
    from actors.limits import RedisBackend

    url, seconds = sys.argv[1], float(sys.argv[2])
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())  # the same instant for both workers

    async def main():
        limits = Limits({"shared": RateLimit(
            requests_per_second=10, backend=RedisBackend(url, prefix="two-processes")
        )})
        await trio.sleep(max(0.0, start_at - time.time()))
        grants = 0
        with trio.move_on_after(seconds):
            while True:
                async with limits.limit("shared"):
                    grants += 1
        print(grants)

    trio.run(main)
    """
)


def test_two_processes_share_one_quota(redis_url: str) -> None:
    """Two processes at 10 requests/s each locally get at most 10*(2+1) grants in 2 s."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, "2.0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:  # imports done in both before the clock starts
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
    start_at = time.time() + 0.2
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{start_at}\n")
        worker.stdin.close()
    counts = []
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stderr is not None
        with worker.stdout, worker.stderr:
            out, err = worker.stdout.read(), worker.stderr.read()
        assert worker.wait(timeout=30) == 0, err
        counts.append(int(out))
    assert sum(counts) <= 10 * (2 + 1), counts
    assert all(count > 0 for count in counts), counts
    # Alone, each would pace itself to about 20: the shared window held them.
    assert sum(counts) >= 10, counts


async def test_refusal_waits_for_the_window(redis_url: str) -> None:
    """A process whose share is spent by another waits until the window frees room."""
    from actors.limits import RedisBackend

    backend = RedisBackend(redis_url, prefix="refusal")
    rate = RateLimit(requests_per_second=5, burst=5, backend=backend)
    first, second = Limits({"api": rate, "warm-up": rate}), Limits({"api": rate})
    async with first.limit("warm-up"):  # imports limits and redis, connects
        pass
    begin = time.monotonic()
    for _ in range(5):
        async with first.limit("api"):
            pass
    spent = time.monotonic() - begin
    async with second.limit("api"):
        waited = time.monotonic() - begin
    # The five shared one window; the second registry's own pacer was full,
    # so only Redis held it back, until the first hit left that window (a
    # second after it, and every hit came after begin).
    assert spent < 0.9
    assert 0.95 <= waited < 5


async def test_token_cost_above_the_shared_window(redis_url: str) -> None:
    """A token cost the shared window can never hold is refused, not retried forever."""
    from actors.limits import RedisBackend

    rate = RateLimit(
        tokens_per_second=10,
        token_burst=20,
        backend=RedisBackend(redis_url, prefix="too-big"),
    )
    limits = Limits({"api": rate})
    with pytest.raises(
        ValueError,
        match=r"^limit 'api': a cost of 15 tokens exceeds the shared window of 10 per 1 second;",
    ):
        async with limits.limit("api", tokens=15):
            pass


def test_bad_url() -> None:
    """Only Redis URLs are accepted."""
    from actors.limits import RedisBackend

    with pytest.raises(ValueError, match=r"^RedisBackend needs a redis:// "):
        RedisBackend("http://localhost")


def test_import_stays_lazy() -> None:
    """Importing actors.limits (and making a RateLimit) never imports limits or redis."""
    code = (
        "import sys, actors, actors.limits\n"
        "actors.limits.RateLimit(requests_per_second=1)\n"
        "bad = [m for m in ('limits', 'redis') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "actors.limits.RedisBackend('redis://127.0.0.1:1/0')\n"
        "assert 'limits' not in sys.modules\n"
        "print(actors.limits.RedisBackend.__module__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "actors.limits\n"
