"""The charger detail dashboard: one charger in depth, one function per row."""

from __future__ import annotations

from exporter import catalogue as metric
from grafana.panels import (
    DASHED,
    Dashboard,
    Json,
    Panel,
    Query,
    bargauge,
    fixed,
    instant,
    line_style,
    regex_color,
    regex_override,
    stat,
    state_timeline,
    steps,
    timeseries,
    yes_no,
)
from grafana.queries import kwh, links, one, variables
from grafana.tables import label_table
from grafana.vocabulary import (
    CHARGER_UID,
    CHARGING_STATES,
    FLEET_UID,
    FREQUENCY_MAX,
    FREQUENCY_MIN,
    IDLE_STATES,
    RED_STATES,
    SUSPENDED_STATES,
    VOLTAGE_MAX,
    VOLTAGE_MIN,
)

VOLTAGE_BAND = steps(("red", None), ("green", VOLTAGE_MIN), ("red", VOLTAGE_MAX))
FREQUENCY_BAND = steps(("red", None), ("green", FREQUENCY_MIN), ("red", FREQUENCY_MAX))
# From the charger's absolute limit to what the vehicle is told.
CHAIN = [
    (metric.EFFECTIVE_CURRENT_LIMIT, "effective limit"),
    (metric.AVAILABLE_CURRENT, "available"),
    (metric.ALLOCATED_CURRENT, "allocated"),
    (metric.COMMANDED_CURRENT, "commanded"),
    (metric.SIGNALED_CURRENT, "signaled"),
    (metric.API_CURRENT_LIMIT, "API limit"),
]
IEC_COLORS = [regex_color(".* [CD]\\d?$", "green"), regex_color(".* [EF]\\d?$", "red")]


def charger() -> Json:
    d = Dashboard(
        CHARGER_UID,
        "Pulsatrix charger detail",
        "One charger in depth: grid, power, the amperage chain, states, the current session and API limits.",
    )
    d.row("Grid and power")
    d.add(*grid_and_power())
    d.row("Amperage chain")
    d.add(*amperage_chain())
    d.row("States")
    d.add(*states())
    d.row("Current session")
    d.add(*current_session())
    d.row("Limits set through the API")
    d.add(*api_limits())
    return d.to_json(variables(single_charger=True), links(FLEET_UID, "Fleet overview"))


def grid_and_power() -> list[Panel]:
    volt, amp = one(metric.VOLTAGE), one(metric.CURRENT)
    band = line_style(fill=0, thresholds="dashed")
    return [
        timeseries(
            "Voltage per phase",
            f"Voltage of each phase. The green band is {VOLTAGE_MIN}-{VOLTAGE_MAX} V (230 V ± 10 %).",
            "volt",
            [Query(volt, "{{charger}} {{phase}}")],
            w=12,
            thresholds=VOLTAGE_BAND,
            style=band,
            decimals=1,
        ),
        timeseries(
            "Current per phase",
            "Current drawn on each phase. Phases that differ a lot while charging three-phase point at an imbalance.",
            "amp",
            [Query(amp, "{{charger}} {{phase}}")],
            w=12,
            decimals=2,
            min=0,
        ),
        timeseries(
            "Active power vs. V × I",
            "The active power the charger measures, next to the sum of voltage × current over its phases "
            "(L1+L2+L3). The two should be close (the estimate ignores the power factor); a large gap points at a "
            "metering problem.",
            "watt",
            [
                Query(one(metric.ACTIVE_POWER), "{{charger}} measured"),
                Query(f"sum by (charger) ({volt} * {amp})", "{{charger}} V × I (L1+L2+L3)"),
            ],
            w=12,
            overrides=[regex_override(".*V × I.*", custom__lineStyle=DASHED)],
            decimals=0,
            min=0,
        ),
        timeseries(
            "Grid frequency",
            f"Grid frequency. The green band is {FREQUENCY_MIN}-{FREQUENCY_MAX} Hz.",
            "hertz",
            [Query(one(metric.GRID_FREQUENCY), "{{charger}}")],
            w=12,
            thresholds=FREQUENCY_BAND,
            style={**band, "axisSoftMin": round(FREQUENCY_MIN - 0.1, 1), "axisSoftMax": round(FREQUENCY_MAX + 0.1, 1)},
            decimals=3,
        ),
    ]


def amperage_chain() -> list[Panel]:
    return [
        timeseries(
            "Amperage chain",
            "From the charger's absolute limit to what the vehicle is told: effective limit (EVSE) → available → "
            "allocated by the load management → commanded by the controller → signaled to the vehicle (pilot PWM), "
            "with the current limit set through the API when there is one.",
            "amp",
            [Query(one(name), f"{{{{charger}}}} {label}") for name, label in CHAIN],
            w=16,
            h=9,
            style=line_style(fill=0),
            overrides=[regex_override(".*(effective limit|API limit)$", custom__lineStyle=DASHED)],
            decimals=1,
            min=0,
        ),
        bargauge(
            "Amperage chain now",
            "The same chain as a snapshot: where the current is being held back right now.",
            "amp",
            [instant(one(name), f"{{{{charger}}}} {label}") for name, label in CHAIN],
            w=8,
            h=9,
            color=fixed("blue"),
            decimals=1,
            min=0,
        ),
    ]


def states() -> list[Panel]:
    # No colour in the mapping: each row keeps the colour of its value (overrides below), purple for the rest.
    active = [{"type": "value", "options": {"1": {"text": "active", "index": 0}}}]
    timelines = [
        state_timeline(
            title,
            description,
            [Query(f"{one(name)} == 1", f"{{{{charger}}}} {{{{{label}}}}}")],
            w=8,
            h=8,
            mappings=active,
            color=fixed("purple"),
            overrides=colors,
        )
        for title, description, name, label, colors in (
            (
                "Charging state",
                "The charger's state over time, one row per state that occurred.",
                metric.STATE,
                "state",
                [
                    regex_color(f".*({CHARGING_STATES})$", "green"),
                    regex_color(f".*({SUSPENDED_STATES})$", "yellow"),
                    regex_color(f".*({IDLE_STATES})$", "blue"),
                    regex_color(f".*({RED_STATES})$", "red"),
                ],
            ),
            (
                "Vehicle status (IEC 61851)",
                "The vehicle's IEC 61851 status over time (A: no vehicle, B: connected, C/D: charging, E/F: error).",
                metric.VEHICLE_STATUS,
                "status",
                IEC_COLORS,
            ),
            (
                "Charge controller status (IEC 61851)",
                "The charge controller's IEC 61851 status over time.",
                metric.CHARGE_CONTROLLER_STATUS,
                "status",
                IEC_COLORS,
            ),
        )
    ]
    return [
        *timelines,
        state_timeline(
            "Up and session",
            "Whether every endpoint answered (up), and whether a charging session was running.",
            [
                Query(one(metric.UP), "{{charger}} up"),
                Query(one(metric.SESSION_ACTIVE), "{{charger}} session"),
            ],
            w=24,
            h=5,
            mappings=yes_no("yes", "no", zero_color="red"),
            overrides=[regex_override(".* session$", mappings=yes_no("session", "no session", zero_color="text"))],
        ),
        label_table(
            "Last errors",
            "When fetching each endpoint last failed, per reason (timeout, connect, http_status, unauthorized, "
            "invalid_json, invalid_payload), since the exporter started. Empty while nothing has failed.",
            f"{one(metric.LAST_ERROR_TIME)} * 1000",
            {"charger": "Charger", "endpoint": "Endpoint", "reason": "Reason"},
            w=24,
            h=5,
            unit="dateTimeAsIso",
            value="When",
            no_value="no errors",
        ),
    ]


def current_session() -> list[Panel]:
    start, end = one(metric.SESSION_START), one(metric.SESSION_END)
    return [
        stat(
            "Session start",
            "When the current (or last) session started.",
            "dateTimeAsIso",
            [instant(f"{start} * 1000", "{{charger}}")],
            w=6,
        ),
        stat(
            "Session duration",
            "How long the current session has been running, or how long the last one lasted.",
            "s",
            [instant(f"({end} - {start}) or (time() - {start})", "{{charger}}")],
            w=6,
        ),
        stat(
            "Session energy",
            "Energy of the current session (meter now − meter at start), or of the last one.",
            "kwatth",
            [instant(kwh(one(metric.SESSION_ENERGY)), "{{charger}}")],
            w=6,
            decimals=2,
        ),
        stat(
            "Session end",
            "When the last session ended. Empty while a session is running.",
            "dateTimeAsIso",
            [instant(f"{end} * 1000", "{{charger}}")],
            w=6,
            no_value="session running",
        ),
        label_table(
            "Session details",
            "Why the session started and stopped, who allocates its current (allocation source) and the phases it "
            "uses (1 per phase in use, L1 L2 L3).",
            one(metric.SESSION_INFO),
            {
                "charger": "Charger",
                "start_reason": "Start reason",
                "stop_reason": "Stop reason",
                "allocation_source": "Allocation source",
                "used_phases": "Used phases",
            },
            w=14,
            h=5,
        ),
        label_table(
            "Charger",
            "What the charger reports about itself: controller name and power domain.",
            one(metric.CHARGER_INFO),
            {"charger": "Charger", "controller_name": "Controller", "power_domain": "Power domain"},
            w=10,
            h=5,
        ),
    ]


def api_limits() -> list[Panel]:
    return [
        stat(
            "Charging enabled (API)",
            "Whether charging is enabled through the API. Disabled means an API client has stopped charging.",
            "none",
            [instant(one(metric.API_LIMIT_ENABLED), "{{charger}}")],
            w=6,
            mappings=yes_no("enabled", "disabled", zero_color="red"),
            color_mode="background",
        ),
        stat(
            "API limit active",
            "Whether a current or power limit is set through the API (otherwise the controller decides).",
            "none",
            [instant(one(metric.API_LIMIT_ACTIVE), "{{charger}}")],
            w=6,
            mappings=yes_no("limited", "not limited", one_color="orange", zero_color="green"),
            color_mode="background",
        ),
        stat(
            "API limit timeout",
            "Time after which limits set through the API become invalid.",
            "s",
            [instant(one(metric.API_LIMIT_TIMEOUT), "{{charger}}")],
            w=6,
        ),
        stat(
            "API current limit",
            "The current limit set through the API. Empty when none is set.",
            "amp",
            [instant(one(metric.API_CURRENT_LIMIT), "{{charger}}")],
            w=6,
            no_value="none",
        ),
        timeseries(
            "API limits over time",
            "Current and power limits set through the API over time (gaps: no limit set).",
            "amp",
            [
                Query(one(metric.API_CURRENT_LIMIT), "{{charger}} current limit"),
                Query(one(metric.API_POWER_LIMIT), "{{charger}} power limit"),
            ],
            w=24,
            style=line_style(fill=0),
            overrides=[regex_override(".* power limit$", unit="watt", custom__axisPlacement="right")],
            min=0,
        ),
    ]
