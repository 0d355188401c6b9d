"""Configuration: the schema (`pigeon.config.schema`) and its loader (`pigeon.config.load`).

    from pigeon.config import load_config, ConfigError
    config = load_config(Path("/etc/pigeon.toml"), overrides={"log": {"level": "debug"}})

docs/config.md is the reference for every key.
"""

from pigeon.config.load import ConfigError, load_config
from pigeon.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config"]
