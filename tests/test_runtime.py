"""The running exporter is one object: serve/app.py's Exporter owns the app, its handlers are its methods, and what
it works with arrives through its constructor, nothing patched in afterwards; exporter/ keeps one AppKey per app."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import bcrypt

from exporter.config import load_config
from exporter.config.web import load_web_config
from exporter.serve.app import EXPORTER, Exporter, create_app
from exporter.serve.webconfig import LiveWebConfig
from tests.support.fleet import ClientFactory, SimulatedFleet, write_config

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_exporter_keeps_one_app_key_per_app() -> None:
    keys = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "exporter").rglob("*.py"))
        for _ in re.findall(r"\bAppKey\(", path.read_text(encoding="utf-8"))
    ]
    assert keys == ["exporter/serve/app.py", "exporter/simulator/api.py"]


def test_every_route_is_a_method_of_the_exporter_that_owns_the_app(fleet: SimulatedFleet) -> None:
    app = create_app(fleet.config())
    exporter = app[EXPORTER]
    assert isinstance(exporter, Exporter) and exporter.app is app
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource is not None}
    assert routes == {
        ("GET", "/"),
        ("HEAD", "/"),
        *(
            (method, path)
            for path in ("/metrics", "/probe", "/sd", "/-/metrics", "/-/healthy", "/-/ready")
            for method in ("GET", "HEAD")
        ),
        ("POST", "/-/reload"),
    }
    assert all(getattr(route.handler, "__self__", None) is exporter for route in app.router.routes())


async def test_the_web_configs_gate_guards_the_app_and_a_reload_gives_it_the_new_users(
    tmp_path: Path, fleet: SimulatedFleet, aiohttp_client: ClientFactory
) -> None:
    web_yml = tmp_path / "web.yml"
    web_yml.write_text(f"basic_auth_users:\n  prometheus: '{hashed(PASSWORD)}'\n")
    live = LiveWebConfig(web_yml, load_web_config(web_yml))
    config = write_config(tmp_path / "pulsatrix.yml", fleet, ["garage"])
    client = await aiohttp_client(create_app(load_config(config), enable_lifecycle=True, web_config=live))
    right = basic("prometheus", PASSWORD)

    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/-/healthy")).status == 200  # open to load balancers and kubelets
    assert (await client.get("/sd", headers=right)).status == 200

    web_yml.write_text(f"basic_auth_users:\n  prometheus: '{hashed('another one')}'\n")
    reply = await client.post("/-/reload", headers=right)
    assert reply.status == 200, await reply.text()
    assert "web config" in await reply.text()
    assert (await client.get("/sd", headers=right)).status == 401  # the gate has the reloaded users
    assert (await client.get("/sd", headers=basic("prometheus", "another one"))).status == 200
