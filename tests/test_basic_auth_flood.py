"""Basic auth under attack: a flood of made-up passwords, unknown user names, odd headers."""

from __future__ import annotations

import asyncio
import base64
import threading

import aiohttp
import bcrypt
import pytest

from exporter.config import Secret
from exporter.webauth import BasicAuthGate
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
        assert len(auth._pending) == BasicAuthGate.MAX_PENDING
        assert auth.bcrypt_runs == BasicAuthGate.MAX_PENDING
        busy = [f.result() for f in flood if f.done()]
        assert busy == [429] * (200 - BasicAuthGate.MAX_PENDING)
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
            "429 Too Many Requests: too many password checks in progress; try again shortly\n"
        )


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
