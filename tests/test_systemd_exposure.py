"""The systemd unit's hardening, as systemd itself rates it (``systemd-analyze security --offline=yes``).

systemd is not PID 1 on the test machines, so the unit cannot be started here; ``verify`` (in test_deploy.py) and
this exposure figure are what can be proven without it. CI installs systemd's tools (Debian's ``systemd``).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy import unit_exposure
from tests.support.docs import documentation
from tests.support.servers import find_binary

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "pulsatrix-exporter.service"

# The README promises this figure ("Install"): 0 is a fully locked-down unit, 10 a plain one.
MAX_EXPOSURE = 1.0


def test_unit_exposure_is_at_most_one() -> None:
    analyze = find_binary("systemd-analyze", package="systemd")  # skips, or fails under PULSATRIX_REQUIRE_E2E=1
    assert unit_exposure(analyze, UNIT) <= MAX_EXPOSURE


def test_unit_keeps_what_the_exporter_needs_to_run() -> None:
    """The items left open are the ones the exporter cannot do without; each is explained in the unit."""
    text = UNIT.read_text(encoding="utf-8")
    keys = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith(("#", "["))
    )
    # IP sockets to reach chargers and serve Prometheus; AF_UNIX and AF_NETLINK for getaddrinfo().
    assert set(keys["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    # Not ProcSubset=pid: it hides /proc/stat and with it every process_* metric.
    assert "ProcSubset" not in keys
    assert keys["IPAddressDeny"] == "any"
    allowed = keys["IPAddressAllow"].split()
    assert {"localhost", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} <= set(allowed)
    assert keys["PrivateMounts"] == "yes"


def test_readme_states_the_exposure_the_unit_has() -> None:
    readme = documentation()
    assert "systemd-analyze security --offline=yes" in readme
    assert f"exposure {MAX_EXPOSURE:.1f}" in readme
