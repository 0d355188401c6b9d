"""The SMTP session's settings from a configuration: `session_config(config)`.

Contract: maps the `[limits]`, `[timeouts]` and `[smtp]` keys (and the
hostname) onto the sans-IO session's `SessionConfig`; one place, so a new
protocol setting is changed here and in the schema, nowhere else. Pure.
"""

from __future__ import annotations

from pigeon.config.schema import Config
from pigeon.proto.settings import SessionConfig

__all__ = ["session_config"]


def session_config(config: Config) -> SessionConfig:
    """The per-session protocol settings (pigeon.proto.settings) for `config`."""
    limits, timeouts, smtp = config.limits, config.timeouts, config.smtp
    return SessionConfig(
        hostname=config.hostname,
        max_message_size=limits.message_size,
        max_recipients=limits.recipients,
        max_errors=limits.errors,
        max_junk_commands=limits.junk_commands,
        max_header_size=limits.header_size,
        hop_limit=limits.hop_count,
        command_timeout=timeouts.command,
        data_timeout=timeouts.data_block,
        data_deadline=timeouts.data_total,
        bare_newline=smtp.bare_newline,
        eight_bit_undeclared=smtp.eight_bit_undeclared,
        enable_pipelining=smtp.pipelining,
        enable_chunking=smtp.chunking,
        enable_smtputf8=smtp.smtputf8,
        enable_dsn=smtp.dsn,
        enable_etrn=smtp.etrn,
        enable_8bitmime=smtp.eight_bit_mime,
    )
