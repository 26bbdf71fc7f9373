"""The energy ledger (``pulsatrix-exporter report``): sessions and per-period energy read back from Prometheus.

client (the HTTP query API) -> queries (which steps to ask for) -> ledger (observations -> sessions, summaries)
-> output (CSV, JSON, table); periods turns --month/--year/--start/--end in a zone into [start, end); command
wires the arguments and the exit codes.
"""
