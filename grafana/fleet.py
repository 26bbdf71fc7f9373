"""The fleet overview dashboard: every charger at a glance, one function per row."""

from __future__ import annotations

from exporter import catalogue as metric
from grafana.panels import (
    DASHED,
    LEGEND_LIST,
    UP_DOWN,
    Dashboard,
    Json,
    Panel,
    Query,
    bargauge,
    fixed,
    instant,
    line_style,
    override,
    regex_color,
    regex_map,
    regex_override,
    stat,
    state_timeline,
    steps,
    timeseries,
    value_map,
)
from grafana.queries import (
    NO_ERRORS,
    answering,
    cost_variables,
    count,
    e,
    faulted,
    in_states,
    kwh,
    links,
    m,
    r,
    s,
    silent,
    unmonitored,
    variables,
)
from grafana.tables import column, label_column, table
from grafana.vocabulary import (
    CHARGER_UID,
    CHARGING_STATES,
    DOWN_SINCE,
    EXPORTER_REASONS,
    EXPORTER_REASONS_RE,
    FAULT_STATES,
    FAULT_STATUS,
    FLEET_UID,
    GROUPED_STATES,
    HOURLY_CHARGING_RATIO,
    HOURLY_ENERGY,
    HOURLY_SESSION_STARTS,
    ID,
    IDLE_STATES,
    KNOWN_FOR,
    LAST_SEEN,
    RED_STATES,
    STATE_SINCE,
    SUSPENDED_STATES,
)

UP = s(metric.UP)
POWER = s(metric.ACTIVE_POWER)
CAPACITY = 'pulsatrix:site_capacity_watts{site=~"$site"}'
ENERGY = r(HOURLY_ENERGY)
SESSIONS = r(HOURLY_SESSION_STARTS)
RATIO = r(HOURLY_CHARGING_RATIO)
HOURLY = (
    f" From the hourly recording rule {HOURLY_ENERGY} (alerts.yml): cheap over "
    "months, accurate to the hour at both ends."
)
# Every endpoint answers and no fault: the charger is counted by its state (and in exactly one tile).
HEALTHY = f"and on ({ID}) ({UP} == 1) unless on ({ID}) {faulted()}"


def fleet() -> Json:
    d = Dashboard(
        FLEET_UID,
        "Pulsatrix fleet overview",
        "Every charger at a glance, the ones in trouble first: status, state, power per site against its capacity, "
        "energy, cost and use per site and period, and the exporter's own health.",
    )
    d.row("Fleet now")
    d.add(*fleet_now(), chargers_table())
    d.row("Sites and power")
    d.add(*sites_and_power())
    d.row("Energy, cost and use")
    d.add(*energy_cost_and_use())
    d.row("States and availability")
    d.add(*states_and_availability())
    d.row("Exporter health", collapsed=True)
    d.add(*exporter_health())
    return d.to_json([*variables(), *cost_variables()], links(CHARGER_UID, "Charger detail"))


def fleet_now() -> list[Panel]:
    """Every charger is counted in exactly one tile: Unmonitored (no series), Down (no endpoint answers), Faulted,
    Partial data (some endpoints fail), or its state (every endpoint answers, no fault)."""
    healthy = (
        " Only chargers whose every endpoint answered and that report no fault; both firmware vocabularies are "
        "counted; 0 when there are none."
    )
    tiles = [
        stat(
            title,
            description + healthy,
            "none",
            [instant(count(in_states(metric.STATE, "state", states) + f" == 1 {HEALTHY}"), title)],
            w=3,
            color=fixed(color),
        )
        for title, description, states, color in (
            ("Charging", "Chargers whose state is Charging.", CHARGING_STATES, "green"),
            ("Suspended", "Chargers whose state is SuspendedEV or SuspendedEVSE.", SUSPENDED_STATES, "yellow"),
            ("Idle", "Chargers whose state is Idle.", IDLE_STATES, "blue"),
        )
    ]
    other = s(metric.STATE, f'state!~"{GROUPED_STATES}|{FAULT_STATES}"')
    return [
        *tiles,
        stat(
            "Other state",
            "Chargers in any other state without a fault (EVConnected, Finishing, Reserved, Unavailable, ...), whose "
            "every endpoint answered. A normal part of a busy day, so not coloured.",
            "none",
            [instant(count(f"{other} == 1 {HEALTHY}"), "other")],
            w=3,
            color=fixed("text"),
        ),
        stat(
            "Faulted",
            "Chargers that report a fault: the state Faulted / FAILED, or IEC 61851 status E, F or R of the vehicle "
            "or of the controller (PulsatrixChargerFault fires after 5 minutes).",
            "none",
            [instant(count(faulted()), "faulted")],
            w=3,
            thresholds=steps(("green", None), ("red", 1)),
            color_mode="background",
        ),
        stat(
            "Partial data",
            "Chargers that answer on some endpoints but not on all in the last scrape: their data is partial "
            "(PulsatrixEndpointFailing). Faulted chargers are counted under Faulted.",
            "none",
            [instant(count(f"({UP} == 0) and on ({ID}) {answering()} unless on ({ID}) {faulted()}"), "partial")],
            w=3,
            thresholds=steps(("green", None), ("orange", 1)),
            color_mode="background",
        ),
        stat(
            "Down",
            "Chargers none of whose four endpoints gave a usable reply in the last scrape: no data at all "
            "(PulsatrixChargerDown).",
            "none",
            [instant(count(silent()), "down")],
            w=3,
            thresholds=steps(("green", None), ("red", 1)),
            color_mode="background",
        ),
        stat(
            "Unmonitored",
            f"Chargers Prometheus has seen in the last {KNOWN_FOR.promql} that have no current data: their exporter "
            "or their /probe target cannot be scraped. They are not healthy, only invisible "
            "(PulsatrixChargerUnmonitored).",
            "none",
            [instant(count(unmonitored()), "unmonitored")],
            w=3,
            thresholds=steps(("green", None), ("purple", 1)),
            color_mode="background",
        ),
    ]


def chargers_table() -> Panel:
    """One row per charger, worst status first: 4 unmonitored, 3 down, 2 faulted, 1 partial data, 0 ok."""
    status = (
        f"max by (charger, site) ((0 * {unmonitored()} + 4)"
        f" or (0 * {silent()} + 3)"
        f" or (0 * {faulted()} + 2)"
        f" or (0 * max by ({ID}, site) ({UP} == 0) + 1)"
        f" or (0 * max by ({ID}, site) ({UP})))"
    )
    since = (
        f"max by (charger) ({r(DOWN_SINCE)}"
        f" or on ({ID}) max without (state) ({r(STATE_SINCE)})"
        f" or on ({ID}) {r(LAST_SEEN)}) * 1000"
    )
    vehicle = (
        "max by (charger, vehicle_status) (label_replace("
        f'{s(metric.VEHICLE_STATUS)} == 1, "vehicle_status", "$1", "status", "(.*)"))'
    )
    last_error = (
        "max by (charger, last_error) (label_join(topk by (charger) (1, "
        f'{s(metric.LAST_ERROR_TIME)}), "last_error", ": ", "endpoint", "reason")) * 1000'
    )
    status_map = value_map(
        ("ok", "green"), ("partial data", "orange"), ("faulted", "red"), ("down", "red"), ("unmonitored", "purple")
    )
    state_colors = regex_map(
        (f"^({CHARGING_STATES})$", "green"),
        (f"^({SUSPENDED_STATES})$", "yellow"),
        (f"^({IDLE_STATES})$", "blue"),
        (f"^({RED_STATES})$", "red"),
    )
    vehicle_colors = regex_map(("^[CD]\\d?$", "green"), (f"^{FAULT_STATUS}$", "red"))
    text = {"type": "color-text"}
    detail = (
        f"/d/{CHARGER_UID}?${{datasource:queryparam}}&${{job:queryparam}}"
        "&var-charger=${__value.raw:percentencode}&${__url_time_range}"
    )
    return table(
        "Chargers",
        "One row per charger, chargers in trouble first (status: unmonitored, down, faulted, partial data, ok), "
        "with since when it is in that status or state (from the recording rules of alerts.yml), its state and "
        "vehicle status (coloured), power, energy of the current (or last) session, how many of the four "
        "endpoints failed in the last scrape, scrape errors in the time range, the last scrape duration and the "
        "last error (endpoint: reason, and when). Click a charger for its detail dashboard.",
        {"charger": "Charger", "site": "Site"},
        [
            column("Status", status, mappings=status_map, custom__cellOptions={"type": "color-background"}),
            column("Since", since, unit="dateTimeFromNow"),
            label_column(
                "State",
                "state",
                f"max by (charger, state) ({s(metric.STATE)} == 1)",
                mappings=state_colors,
                custom__cellOptions=text,
            ),
            label_column("Vehicle", "vehicle_status", vehicle, mappings=vehicle_colors, custom__cellOptions=text),
            column("Power", f"sum by (charger) ({POWER})", unit="watt", decimals=0),
            column(
                "Session energy",
                kwh(f"sum by (charger) ({s(metric.SESSION_ENERGY)})"),
                unit="kwatth",
                decimals=2,
            ),
            column(
                "Failing endpoints",
                f"sum by (charger) (1 - {s(metric.ENDPOINT_UP)})",
                thresholds=steps(("green", None), ("red", 1)),
                custom__cellOptions=text,
            ),
            # Only (endpoint, reason) pairs that occurred have a counter: healthy chargers get 0, not an empty cell.
            column(
                "Scrape errors (range)",
                f"sum by (charger) (increase({s(metric.FETCH_ERRORS)}[$__range])) or sum by (charger) (0 * {UP})",
                decimals=0,
                thresholds=steps(("green", None), ("orange", 1)),
                custom__cellOptions=text,
            ),
            column("Scrape duration", f"max by (charger) ({s(metric.POLL_DURATION)})", unit="s"),
            label_column(
                "Last error",
                "last_error",
                last_error,
                value_title="Last error at",
                value_props={"unit": "dateTimeAsIso"},
            ),
        ],
        w=24,
        h=20,
        sort_by="Status",
        desc=True,
        filterable=True,
        overrides=[override("Charger", links=[{"title": "Charger detail", "url": detail}])],
    )


def sites_and_power() -> list[Panel]:
    stacked = line_style(fill=30, stack=True)
    return [
        stat(
            "Total power",
            "Sum of the active power of the selected chargers right now. No data (not 0 W) while no charger is "
            "monitored: see Unmonitored.",
            "watt",
            [instant(f"sum({POWER})", "total")],
            h=8,
        ),
        timeseries(
            "Site power vs. capacity",
            "Active power of each site (sum of its chargers) over time, with the site's capacity as a dashed line. "
            "The capacity is configured once, in deploy/prometheus/sites.yml (recording rule "
            "pulsatrix:site_capacity_watts); a site without one shows no line.",
            "watt",
            [Query(f"sum by (site) ({POWER})", "{{site}}"), Query(f"max by (site) ({CAPACITY})", "{{site}} capacity")],
            w=12,
            overrides=[regex_override(".* capacity$", custom__lineStyle=DASHED, custom__fillOpacity=0)],
            min=0,
        ),
        bargauge(
            "Site load now",
            "Each site's power right now as a share of its capacity (sites.yml): orange from 80 %, red from 95 %.",
            "percentunit",
            [instant(f"sum by (site) ({POWER}) / on (site) max by (site) ({CAPACITY})", "{{site}}")],
            w=8,
            h=8,
            gradient=True,
            thresholds=steps(("green", None), ("orange", 0.8), ("red", 0.95)),
            min=0,
            max=1,
        ),
        timeseries(
            "Power per power domain",
            "Active power per site and power domain (the load-management group the charger reports in "
            f"{metric.CHARGER_INFO}), stacked.",
            "watt",
            [
                Query(
                    f"sum by (site, power_domain) ({POWER} * on ({ID}) group_left (power_domain) "
                    f"{s(metric.CHARGER_INFO)})",
                    "{{site}} {{power_domain}}",
                )
            ],
            w=12,
            style=stacked,
        ),
        timeseries(
            "Power per charger",
            "Active power of each charger, stacked: which chargers make up the total.",
            "watt",
            [Query(f"sum by (charger) ({POWER})", "{{charger}}")],
            w=12,
            style=stacked,
        ),
    ]


def energy_cost_and_use() -> list[Panel]:
    energy_per_site = [
        bargauge(
            title,
            f"Energy the chargers of each site imported {period}, in kWh.{HOURLY}",
            "kwatth",
            [instant(f"sort_desc({kwh(f'sum by (site) (sum_over_time({ENERGY}[$__range]))')})", "{{site}}")],
            w=8,
            h=6,
            gradient=True,
            color={"mode": "continuous-GrYlRd"},
            time_from=time_from,
            decimals=1,
            min=0,
        )
        for title, period, time_from in (
            ("Energy today per site", "since midnight (the dashboard's time zone)", "now/d"),
            ("Energy this month per site", "since the first of the month", "now/M"),
            ("Energy in the time range per site", "in the dashboard's time range", ""),
        )
    ]
    per_day = line_style(bars=True, stack=True, bar_alignment=1)
    meter = s(metric.ENERGY_IMPORTED)
    return [
        *energy_per_site,
        use_table("site", {"site": "Site"}, w=10),
        use_table("charger", {"charger": "Charger", "site": "Site"}, w=14),
        timeseries(
            "Sessions per day per site",
            "Charging sessions started per calendar day and site (the last 7 days and today so far), from the "
            f"hourly recording rule {HOURLY_SESSION_STARTS}. Days as in Energy per charger per day.",
            "none",
            [Query(f"sum by (site) (sum_over_time({SESSIONS}[1d] offset -1d))", "{{site}}", interval="1d")],
            w=8,
            style=per_day,
            time_from="7d",
            decimals=0,
        ),
        timeseries(
            "Energy per charger per day",
            "Energy each charger imported per calendar day, in kWh: the last 7 days and today so far (today's bar "
            "grows until midnight). Days are those of the dashboard's time zone (the browser's unless the dashboard "
            "sets one): with a 1-day step Grafana evaluates the query at each midnight of that time zone, and each "
            "bar, drawn from that midnight, is the increase of the energy meter over the 24 h after it "
            "(`[1d] offset -1d`). Grafana uses today's UTC offset for every day, so after a daylight-saving change "
            "the earlier days run from 23:00 or 01:00. A meter reading that steps backwards even slightly "
            "(12345.0 → 12344.9 kWh) counts as a counter reset: that day's bar then includes the whole reading "
            "(the PulsatrixEnergyMeterWentBackwards alert fires).",
            "kwatth",
            [Query(kwh(f"sum by (charger) (increase({meter}[1d] offset -1d))"), "{{charger}}", interval="1d")],
            w=16,
            style=per_day,
            time_from="7d",
            decimals=1,
        ),
        bargauge(
            "Energy in the last 24 h",
            "Energy each charger imported in the 24 hours up to now (a sliding window, not since midnight), largest "
            "first. A meter reading that steps backwards counts as a counter reset and adds the whole reading.",
            "kwatth",
            [instant(f"sort_desc({kwh(f'sum by (charger) (increase({meter}[1d]))')})", "{{charger}}")],
            w=8,
            h=8,
            gradient=True,
            color={"mode": "continuous-GrYlRd"},
            decimals=1,
            min=0,
        ),
    ]


def use_table(by: str, keys: dict[str, str], w: int) -> Panel:
    """Energy, cost, sessions and utilisation per site or per charger in the time range."""
    group = ", ".join(keys)
    energy = kwh(f"sum by ({group}) (sum_over_time({ENERGY}[$__range]))")
    return table(
        f"Energy, cost and use per {by} in the time range",
        f"Per {by}, in the dashboard's time range: energy (kWh), its cost at the tariff variable (price per "
        "kWh, in the currency variable; set both at the top), the number of sessions started, and utilisation "
        "(share of the time spent charging). For a day or a month, pick *Today so far* or *This month so far* in "
        f"the time picker.{HOURLY}",
        keys,
        [
            column("Energy", energy, unit="kwatth", decimals=1),
            column("Cost", f"{energy} * $tariff", decimals=2, displayName="Cost (${currency})"),
            column("Sessions", f"sum by ({group}) (sum_over_time({SESSIONS}[$__range]))", decimals=0),
            column(
                "Utilisation", f"avg by ({group}) (avg_over_time({RATIO}[$__range]))", unit="percentunit", decimals=0
            ),
        ],
        w=w,
        h=8,
        sort_by="Energy",
        desc=True,
    )


def states_and_availability() -> list[Panel]:
    return [
        timeseries(
            "Chargers by state",
            "How many chargers were in each state over time (stacked; only chargers whose every endpoint answered), "
            "plus how many had partial data and how many were down: each charger is counted once.",
            "none",
            [
                Query(f"count by (state) ({s(metric.STATE)} == 1 and on ({ID}) ({UP} == 1))", "{{state}}"),
                Query(f"count(({UP} == 0) and on ({ID}) {answering()}) or vector(0)", "partial data"),
                Query(f"count({silent()}) or vector(0)", "down"),
            ],
            w=12,
            style=line_style(fill=40, stack=True),
            legend=LEGEND_LIST,
            overrides=[
                regex_color(f"^({CHARGING_STATES})$", "green"),
                regex_color(f"^({SUSPENDED_STATES})$", "yellow"),
                regex_color(f"^({IDLE_STATES})$", "blue"),
                regex_color(f"^({FAULT_STATES})$", "dark-red"),
                regex_color("^partial data$", "orange"),
                regex_color("^down$", "red"),
            ],
            decimals=0,
        ),
        state_timeline(
            "Charger availability",
            "When each charger was up (every endpoint answered) or down (at least one endpoint failed).",
            [Query(f"min by (charger) ({UP})", "{{charger}}")],
            w=12,
            h=8,
            mappings=UP_DOWN,
        ),
    ]


def exporter_health() -> list[Panel]:
    errors = s(metric.FETCH_ERRORS)
    device_errors = s(metric.FETCH_ERRORS, f'reason!~"{EXPORTER_REASONS_RE}"')
    own_errors = s(metric.FETCH_ERRORS, f'reason=~"{EXPORTER_REASONS_RE}"')
    duration = s(metric.POLL_DURATION)
    return [
        timeseries(
            "Scrape duration per charger",
            "How long the exporter took to fetch all four endpoints of each charger. Close to the timeout means the "
            "charger (or the network to it) is slow.",
            "s",
            [Query(f"max by (charger) ({duration})", "{{charger}}")],
            w=8,
        ),
        timeseries(
            "Scrape errors by reason",
            "Failed endpoint fetches per second that the chargers caused, by reason (timeout, connect, "
            "http_status, unauthorized, invalid_json, invalid_payload). Flat at 0 on a healthy fleet. The "
            "exporter's own (" + ", ".join(EXPORTER_REASONS) + ") are under Exporter-side errors.",
            "cps",
            [Query(f"sum by (reason) (rate({device_errors}[$__rate_interval])){NO_ERRORS}", "{{reason}}")],
            w=8,
            legend=LEGEND_LIST,
        ),
        bargauge(
            "Scrape errors in the time range",
            "Failed endpoint fetches in the selected time range, by reason: why chargers failed. The Chargers table "
            "above shows which charger.",
            "none",
            [instant(f"sort_desc(sum by (reason) (increase({errors}[$__range]))){NO_ERRORS}", "{{reason}}")],
            w=8,
            h=8,
            thresholds=steps(("green", None), ("orange", 1)),
            decimals=0,
            min=0,
        ),
        stat(
            "Exporter processes up",
            "Exporter processes Prometheus reached in its last scrape (`up` of the Exporter job variable: the jobs "
            f"that carry {metric.BUILD_INFO}) and those it did not. Counts processes, not chargers, "
            "whichever chargers, sites or job are selected. Both 0 means no such job is scraped: with a /probe job, "
            "add one that scrapes the exporter's /-/metrics.",
            "none",
            [instant(f"sum({e('up')}) or vector(0)", "up"), instant(f"count({e('up')} == 0) or vector(0)", "down")],
            w=6,
            thresholds=steps(("red", None), ("green", 1)),
            color_mode="background",
            text="value_and_name",
            overrides=[override("down", thresholds=steps(("green", None), ("red", 1)))],
        ),
        stat(
            "Exporter version",
            f"Each exporter version running, with how many processes run it ({metric.BUILD_INFO} of "
            "the Exporter job). Two versions at once: an upgrade is under way or a replica was left behind.",
            "none",
            [instant(f"count by (version) ({e(m(metric.BUILD_INFO))})", "{{version}}")],
            w=6,
            text="value_and_name",
            no_value="no exporter job",
        ),
        stat(
            "Invalid values skipped",
            "Device values skipped in the time range because they were null, of a wrong type or infinite.",
            "none",
            [instant(f"sum(increase({s(metric.INVALID_VALUES)}[$__range])) or vector(0)")],
            w=6,
            thresholds=steps(("green", None), ("orange", 1)),
            decimals=0,
        ),
        stat(
            "Slowest charger scrape",
            "The longest scrape duration of any selected charger in the last scrape.",
            "s",
            [instant(f"max({duration})")],
            w=6,
            thresholds=steps(("green", None), ("orange", 2), ("red", 4)),
        ),
        timeseries(
            "Exporter CPU",
            "CPU time each exporter process uses per second (1 = one full core), from process_cpu_seconds_total of "
            "the Exporter job. Near 1 the process is saturated: scrapes get slow; add a replica.",
            "percentunit",
            [Query(f"sum by (instance) (rate({e('process_cpu_seconds_total')}[$__rate_interval]))", "{{instance}}")],
            w=12,
            min=0,
        ),
        timeseries(
            "Exporter memory",
            "Resident memory of each exporter process (process_resident_memory_bytes of the Exporter job). It "
            "should stay flat; steady growth points at a leak.",
            "bytes",
            [Query(f"sum by (instance) ({e('process_resident_memory_bytes')})", "{{instance}}")],
            w=12,
            min=0,
        ),
        timeseries(
            "Exporter-side errors",
            "Endpoint fetches per second that failed because of the exporter, not the charger, by reason and "
            "charger: throttled (no max_concurrency slot before the deadline: raise max_concurrency or the "
            "timeout, or add a replica), exporter_error (a bug: see the exporter's log), exporter_fds (out of "
            "file descriptors), scrape_timeout (Prometheus' scrape_timeout ran out before the charger's own "
            "timeout: raise scrape_timeout or lower the chargers' timeout). Flat at 0 on a healthy exporter; "
            "PulsatrixExporterSideErrors alerts on them.",
            "cps",
            [
                Query(
                    f"sum by (reason, charger) (rate({own_errors}[$__rate_interval]))"
                    ' or label_replace(vector(0), "reason", "none", "", "")',
                    "{{reason}} {{charger}}",
                )
            ],
            w=24,
            legend=LEGEND_LIST,
        ),
    ]
