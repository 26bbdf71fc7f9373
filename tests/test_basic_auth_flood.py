"""Basic auth under attack: a flood of made-up passwords, unknown user names, odd headers."""

from __future__ import annotations

import asyncio
import base64
import threading

import aiohttp
import bcrypt
import pytest

from exporter.config import Secret
from exporter.serve.auth import BasicAuthGate, TooManyChecks
from tests.support.auth import serve_protected
from tests.support.fleet import ServerFactory

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def header(user: str | bytes, password: str | bytes) -> dict[str, str]:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def protected(aiohttp_server: ServerFactory, auth: BasicAuthGate) -> str:
    return f"http://127.0.0.1:{await serve_protected(aiohttp_server, auth)}/metrics"


async def test_a_flood_of_wrong_passwords_queues_a_bounded_number_of_checks(aiohttp_server: ServerFactory) -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    release = threading.Event()
    real = auth._bcrypt

    def slow_bcrypt(user: str, password: bytes) -> bool:
        release.wait(timeout=30)  # bcrypt is busy: nothing finishes until the flood is in
        return real(user, password)

    auth._bcrypt = slow_bcrypt  # type: ignore[method-assign]
    url = await protected(aiohttp_server, auth)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def get(headers: dict[str, str]) -> int:
            async with session.get(url, headers=headers) as response:
                await response.read()
                return response.status

        flood = [asyncio.ensure_future(get(header("prometheus", f"guess-{i}"))) for i in range(200)]
        for _ in range(200):  # bounded: until every request got an answer or waits for bcrypt
            await asyncio.sleep(0.02)
            if sum(f.done() for f in flood) + len(auth._pending) == 200:
                break
        per_address = BasicAuthGate.MAX_PENDING_PER_ADDRESS
        assert len(auth._pending) == per_address  # one address: its share, not every check the gate may queue
        assert auth.bcrypt_runs == BasicAuthGate.THREADS  # the others wait for a thread
        busy = [f.result() for f in flood if f.done()]
        assert busy == [429] * (200 - per_address)
        release.set()
        statuses = await asyncio.gather(*flood)
        assert sorted(set(statuses)) == [401, 429]
        assert auth._pending == {}
        assert await get(header("prometheus", PASSWORD)) == 200, "once the flood is checked, the right password works"


async def test_a_busy_answer_says_when_to_retry(aiohttp_server: ServerFactory) -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    auth.MAX_PENDING = 0
    url = await protected(aiohttp_server, auth)
    async with aiohttp.ClientSession() as session, session.get(url, headers=header("prometheus", "x")) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert await response.text() == (
            "429 Too Many Requests: too many password checks from this address; try again shortly\n"
        )


async def test_a_wrong_password_repeated_costs_one_bcrypt_run_a_minute() -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    now = [100.0]
    auth.clock = lambda: now[0]
    try:
        for _ in range(50):
            assert not await auth.verify("prometheus", "wrong", "192.0.2.7")
        assert auth.bcrypt_runs == 1
        now[0] += BasicAuthGate.FAILED_TTL
        assert not await auth.verify("prometheus", "wrong", "192.0.2.7")
        assert auth.bcrypt_runs == 2
        assert await auth.verify("prometheus", PASSWORD, "192.0.2.7")
    finally:
        await auth.close()


async def test_an_address_may_spend_10_failed_checks_then_one_every_2_seconds() -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    now = [100.0]
    auth.clock = lambda: now[0]
    try:
        for i in range(10):
            assert not await auth.verify("prometheus", f"guess-{i}", "192.0.2.7")
        with pytest.raises(TooManyChecks):
            await auth.verify("prometheus", "guess-10", "192.0.2.7")
        assert await auth.verify("prometheus", PASSWORD, "198.51.100.1"), "another address has its own budget"
        assert await auth.verify("prometheus", PASSWORD, "192.0.2.7"), "a verified password needs no check"
        with pytest.raises(TooManyChecks):  # one IPv6 host holds a whole /64
            for i in range(11):
                await auth.verify("prometheus", f"v6-{i}", f"2001:db8::{i:x}")
        now[0] += 2.0
        assert not await auth.verify("prometheus", "guess-11", "192.0.2.7")
        assert auth.bcrypt_runs == 10 + 1 + 10 + 1
    finally:
        await auth.close()


async def test_a_real_user_logs_in_during_a_guessing_flood_from_another_address(
    aiohttp_server: ServerFactory,
) -> None:
    """80 connections with distinct wrong passwords, each repeating its own, from 127.0.0.1; Prometheus, whose
    login is not cached yet (just restarted), from 127.0.0.2: it gets 200, after at most the checks running. At
    bcrypt's usual cost 10 (~70 ms a check), as in a real web config."""
    auth = BasicAuthGate((("prometheus", Secret(bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode())),))
    url = await protected(aiohttp_server, auth)
    stop, flooding = asyncio.Event(), asyncio.Event()
    statuses: list[int] = []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as flood,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as prometheus,
    ):

        async def guess(i: int) -> None:
            while not stop.is_set():
                async with flood.get(url, headers=header("prometheus", f"guess-{i}")) as response:
                    await response.read()
                    statuses.append(response.status)
                    if len(statuses) >= 400:
                        flooding.set()

        guessers = [asyncio.ensure_future(guess(i)) for i in range(80)]
        await flooding.wait()  # 400 answers in: every guess is answered at once or checked
        async with prometheus.get(url, headers=header("prometheus", PASSWORD)) as response:
            assert response.status == 200
        stop.set()
        await asyncio.gather(*guessers)
    assert set(statuses) == {401, 429}
    assert auth.bcrypt_runs <= BasicAuthGate.GUESS_BURST + 10 + 1  # the guesses' budget, plus the real login


async def test_an_unknown_user_costs_as_much_bcrypt_as_the_costliest_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing must not tell which user names exist, also when a hash is costlier than 2^12 rounds."""
    costly = "$2b$14$" + HASH[7:]  # a cost-14 hash (never computed here: checkpw is recorded, not run)
    checked: list[bytes] = []

    def record(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return False

    monkeypatch.setattr(bcrypt, "checkpw", record)
    auth = BasicAuthGate((("cheap", Secret(HASH)), ("prometheus", Secret(costly))))
    try:
        assert not await auth.verify("nobody", PASSWORD)
        assert not await auth.verify("prometheus", "wrong")
    finally:
        await auth.close()
    assert [h[:7] for h in checked] == [b"$2b$14$", b"$2b$14$"]


async def test_an_unknown_user_with_a_real_users_password_is_refused() -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    try:
        assert not await auth.verify("nobody", PASSWORD)
        assert await auth.verify("prometheus", PASSWORD)
    finally:
        await auth.close()


async def test_odd_credentials_are_refused_and_never_break_the_server(aiohttp_server: ServerFactory) -> None:
    auth = BasicAuthGate((("prometheus", Secret(HASH)),))
    url = await protected(aiohttp_server, auth)
    async with aiohttp.ClientSession() as session:
        for headers, status in [
            (header(b"prometheus", b"\xff\xfe"), 401),  # not UTF-8
            (header("prometheus", PASSWORD.encode("latin-1") + b"\xe9"), 401),
            (header("prometheus", "p" * 5000), 401),  # longer than bcrypt's 72 bytes
            ({"Authorization": "Basic " + "A" * 20_000}, 400),  # longer than aiohttp's header limit
            ({"Authorization": "Basic"}, 401),
            (header("", ""), 401),
        ]:
            async with session.get(url, headers=headers) as response:
                assert response.status == status, headers["Authorization"][:40]
        assert len(auth._verified) == 0 and auth._pending == {}
        async with session.get(url, headers=header("prometheus", PASSWORD)) as response:
            assert response.status == 200
