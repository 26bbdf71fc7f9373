"""The vocabulary the dashboards and the alert rules share (node-mixin's ``_config``, in Python).

Both generators import it: ``grafana.build`` (the dashboards) and ``deploy.prometheus.generate_rules`` (alerts.yml).
A limit, a state set or a window changed here changes both, so a panel's green band and the alert that fires outside
it cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --- labels and jobs ---------------------------------------------------------------------------------------------

# The labels that identify one charger's series (joins between its metrics match on them).
ID: Final = "charger, instance, job"
# The extra label (configured on the chargers) that names the site.
SITE_LABEL: Final = "site"
# The jobs of the shipped Prometheus configuration (docs/deployment.md, "Prometheus configuration"): the exporter
# processes (/metrics in single-job mode, /-/metrics beside /probe) and the /probe job (one target per charger).
EXPORTER_JOB: Final = "pulsatrix-exporter"
PROBE_JOB: Final = "pulsatrix"

# --- states ------------------------------------------------------------------------------------------------------

# Both firmware vocabularies of `state` (see exporter.scrape.families.STATE_SETS), grouped the way the fleet view counts
# them.
CHARGING_STATES: Final = "Charging|CHARGING"
SUSPENDED_STATES: Final = "SuspendedEV|SuspendedEVSE|SUSPENDED_EV|SUSPENDED_EVSE"
IDLE_STATES: Final = "Idle|IDLE"
GROUPED_STATES: Final = f"{CHARGING_STATES}|{SUSPENDED_STATES}|{IDLE_STATES}"
# The fault states of both vocabularies, and IEC 61851 E, F and R (vehicle / controller status) in both forms.
FAULT_STATES: Final = "Faulted|FAILED"
FAULT_STATUS: Final = "[EFR]1?"
# States shown red: a fault, or a charger that cannot charge.
RED_STATES: Final = f"{FAULT_STATES}|Unavailable"

# --- reasons -----------------------------------------------------------------------------------------------------

# The `reason`s of pulsatrix_scrape_errors_total that are the exporter's problem, not the charger's
# (exporter.scrape.results Reason): no max_concurrency slot before the deadline, a bug, no file descriptor left, the
# scrape's timeout ran out before the charger's own. The charger was not even asked (or its answer was lost in the
# exporter, or not waited for): dashboards show them apart from the device's reasons, the charger alerts do not
# count them against the charger, and PulsatrixExporterSideErrors reports them.
EXPORTER_REASONS: Final = ("throttled", "exporter_error", "exporter_fds", "scrape_timeout")
EXPORTER_REASONS_RE: Final = "|".join(EXPORTER_REASONS)

# --- grid limits -------------------------------------------------------------------------------------------------

# EN 50160: 230 V ± 10 % (on 10-minute means); 50 Hz, band of normal operation ± 0.2 Hz. For a 60 Hz grid set
# 59.8 and 60.2: the frequency panel's band and PulsatrixFrequencyOutOfRange follow.
VOLTAGE_MIN: Final = 207
VOLTAGE_MAX: Final = 253
FREQUENCY_MIN: Final = 49.8
FREQUENCY_MAX: Final = 50.2

# --- durations ---------------------------------------------------------------------------------------------------

_UNITS: Final = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True)
class Duration:
    """A duration written once, rendered as PromQL (``1d``, in a range selector) or as seconds (``86400``, in
    arithmetic with ``time()``)."""

    seconds: int

    @property
    def promql(self) -> str:
        """The largest unit that divides it: 86400 → ``1d``, 5400 → ``90m``."""
        for suffix, size in _UNITS:
            if self.seconds % size == 0:
                return f"{self.seconds // size}{suffix}"
        raise AssertionError("unreachable: every integer is a multiple of 1 s")  # pragma: no cover

    def __str__(self) -> str:
        return str(self.seconds)


# --- recording rules ----------------------------------------------------------------------------------------------

# The series deploy/prometheus/generate_rules.py records and the dashboards read (the exporter's own metric names are
# exporter.catalogue's). Per charger: when it was last seen, since when it is in its state, since when it fails ...
LAST_SEEN: Final = "pulsatrix:charger_last_seen_timestamp_seconds"
STATE_SINCE: Final = "pulsatrix:charger_state_since_timestamp_seconds"
DOWN_SINCE: Final = "pulsatrix:charger_down_since_timestamp_seconds"
# ... and its hourly figures for the month-scale panels.
HOURLY_ENERGY: Final = "pulsatrix:charger_energy_joules:increase1h"
HOURLY_SESSION_STARTS: Final = "pulsatrix:charger_session_starts:changes1h"
HOURLY_CHARGING_RATIO: Final = "pulsatrix:charger_charging_ratio:avg1h"

# How long a charger that stopped reporting still counts as "unmonitored" (not yet as removed): the fleet tile and
# the recording rule LAST_SEEN.
KNOWN_FOR: Final = Duration(86400)

# --- money -------------------------------------------------------------------------------------------------------

# The currency of the dashboards' tariff variable (ISO 4217), its default; users set their own at the top.
CURRENCY: Final = "EUR"

# --- dashboards --------------------------------------------------------------------------------------------------

# The dashboards' uids: their links to each other, the Chargers table's drill-down and the alerts' dashboard_url.
FLEET_UID: Final = "pulsatrix-fleet"
CHARGER_UID: Final = "pulsatrix-charger"
