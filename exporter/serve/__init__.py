"""Serving HTTP: the running exporter, which owns the aiohttp app and whose methods are its handlers (app), the
status page (landing), binding the listening sockets (bind), running the server with its connection cap (server),
basic auth (auth), the web config at run time: TLS that follows its files, users re-read on reload (webconfig),
reloading the config (reload) and what aiohttp's server may log about a malformed request (serverlog).

Layer rule (tests/test_layers.py): imports the config and scrape layers and the catalogue, never the report or
simulator packages.
"""
