"""Polling chargers into metric families and bytes: fetch (HTTP GETs to the chargers), parse (raw JSON into typed
values), poll (coalescing, ``min_interval``, deadlines, health), families (the metric families of one scrape) and
exposition (families into the text formats).

Layer rule (tests/test_layers.py): imports the config layer and the catalogue, never ``aiohttp.web`` (serving is
the serve layer's job) nor the serve, report or simulator packages.
"""
