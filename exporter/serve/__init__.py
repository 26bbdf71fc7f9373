"""Serving HTTP: the aiohttp app and its handlers (app), the status page (landing), binding the listening sockets
(bind), running the server with its connection cap (server), basic auth (auth), TLS that follows its files (tls)
and reloading the config (reload).

Layer rule (tests/test_layers.py): imports the config and scrape layers and the catalogue, never the report or
simulator packages.
"""
