"""Reading files into frozen objects: the exporter's config file and the web config file.

Layer rule (tests/test_layers.py): nothing here imports aiohttp or another layer of the exporter. The public names
of the exporter's config are re-exported here, so ``from exporter.config import Config, load_config`` is the
import path to use; the modules are ``schema`` (the config file's keys and checks), ``reader`` (the generic,
path-naming reader both files are checked with), ``yamlfile`` (hardened YAML and file reading), ``errors`` (the
one-line messages) and ``web`` (the web config file).
"""

from exporter.config.errors import ConfigError
from exporter.config.reader import Secret
from exporter.config.schema import (
    DEFAULT_KEEPALIVE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT,
    MAX_CONFIG_BYTES,
    BasicAuth,
    BearerAuth,
    ChargerConfig,
    Config,
    TLSConfig,
    demo_config,
    load_config,
    parse_config,
)

__all__ = [
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "MAX_CONFIG_BYTES",
    "BasicAuth",
    "BearerAuth",
    "ChargerConfig",
    "Config",
    "ConfigError",
    "Secret",
    "TLSConfig",
    "demo_config",
    "load_config",
    "parse_config",
]
