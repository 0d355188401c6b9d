"""[[plugins]]: the shape checked by the configuration loader, the code and the
plugin's own table checked by the plugin loader (hooks/load.py, settings.py),
every problem naming its key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pigeon.config import load_config
from pigeon.config.load import ConfigError, collect_config
from pigeon.hooks.load import load_plugins, receive_checks

GREETER = """
from dataclasses import dataclass, field
from pathlib import Path

class Plugin:
    @dataclass
    class Settings:
        greeting: str
        times: int = 1
        ratio: float = 0.5
        loud: bool = False
        names: list[str] = field(default_factory=list)
        spool: Path | None = None

    def __init__(self, settings, context):
        self.settings, self.context = settings, context

    def helo(self, session):
        return None
"""


def _config(tmp_path: Path, entries: str, **files: str):
    for name, code in files.items():
        (tmp_path / name).write_text(textwrap.dedent(code))
    path = tmp_path / "pigeon.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n' + entries)
    return path


def _problems(tmp_path, entries, **files) -> list[str]:
    config, problems = collect_config(_config(tmp_path, entries, **files))
    if not problems:
        try:
            load_plugins(config)
        except ConfigError as exc:
            problems = exc.problems
    return [f"{p.key}: {p.message}" for p in problems]


def test_a_plugin_file_next_to_the_configuration_is_loaded_with_its_settings(tmp_path):
    config = load_config(
        _config(
            tmp_path,
            '[[plugins]]\npath = "greeter.py"\ntimeout = 2\n[plugins.config]\n'
            'greeting = "hi"\ntimes = 3\nratio = 1\nnames = ["a"]\nspool = "/tmp/x"\n',
            **{"greeter.py": GREETER},
        )
    )
    assert config.plugins[0].path == tmp_path / "greeter.py"
    assert config.plugins[0].name == "greeter" and config.plugins[0].timeout == 2.0
    (plugin,) = load_plugins(config)
    s = plugin.instance.settings
    assert (s.greeting, s.times, s.ratio, s.loud, s.names, s.spool) == (
        "hi",
        3,
        1.0,
        False,
        ["a"],
        Path("/tmp/x"),
    )
    assert plugin.instance.context.name == "greeter"
    assert plugin.instance.context.data_dir == tmp_path / "data"
    (check,) = receive_checks([plugin])
    assert type(check).__name__ == "plugin greeter"
    assert hasattr(check, "helo") and not hasattr(check, "rcpt")


@pytest.mark.parametrize(
    "table, problem",
    [
        ('greting = "hi"', 'plugins[0].config.greting: unknown key (did you mean "greeting"?)'),
        ("times = 1", "plugins[0].config.greeting: required key missing"),
        ('greeting = "a"\ntimes = "3"', 'plugins[0].config.times: must be an integer, got "3"'),
        ('greeting = "a"\nloud = 1', "plugins[0].config.loud: must be true or false, got 1"),
        (
            'greeting = "a"\nnames = "x"',
            'plugins[0].config.names: must be a list of strings, got "x"',
        ),
    ],
)
def test_a_bad_plugin_table_is_refused_naming_the_key(tmp_path, table, problem):
    entries = f'[[plugins]]\npath = "greeter.py"\n[plugins.config]\n{table}\n'
    assert problem in _problems(tmp_path, entries, **{"greeter.py": GREETER})


@pytest.mark.parametrize(
    "entries, problem",
    [
        (
            "[[plugins]]\ntimeout = 1\n",
            "plugins[0]: needs exactly one of module, entry_point, path (none given)",
        ),
        (
            '[[plugins]]\npath = "a.py"\nmodule = "a"\n',
            "plugins[0]: needs exactly one of module, entry_point, path (module and path given)",
        ),
        (
            '[[plugins]]\nmodule = "a b"\n',
            'plugins[0].module: must be "package.module[:attribute]", got "a b"',
        ),
        (
            '[[plugins]]\nmodule = "json"\ntimeout = 0\n',
            "plugins[0].timeout: must be a positive number of seconds, got 0",
        ),
        (
            '[[plugins]]\nmodule = "json"\nwhen = 1\n',
            "plugins[0].when: unknown key (known keys: config, entry_point, module, name, path, timeout)",
        ),
        (
            '[[plugins]]\nmodule = "json"\n[[plugins]]\nmodule = "x.json"\n',
            'plugins[1].name: "json" names an earlier plugin too',
        ),
        ("plugins = 3\n", "plugins: must be an array of tables ([[plugins]]), got 3"),
    ],
)
def test_the_shape_of_an_entry_is_checked_by_the_configuration_loader(tmp_path, entries, problem):
    assert problem in _problems(tmp_path, entries)


def test_code_that_does_not_load_is_a_configuration_problem(tmp_path):
    problems = _problems(
        tmp_path,
        '[[plugins]]\npath = "broken.py"\n[[plugins]]\nmodule = "json"\n'
        '[[plugins]]\nentry_point = "no-such-plugin"\n[[plugins]]\npath = "missing.py"\n'
        '[[plugins]]\npath = "greeter.py"\n',
        **{"broken.py": "def (:\n", "greeter.py": GREETER},
    )
    assert problems[0].startswith(
        f"plugins[0].path: cannot load path {tmp_path}/broken.py: SyntaxError"
    )
    assert problems[1] == "plugins[1].module: module json has no plugin class (`Plugin`)"
    assert problems[2] == (
        "plugins[2].entry_point: cannot load entry point no-such-plugin: LookupError: "
        'no entry point "no-such-plugin" in group pigeon.plugins'
    )
    assert problems[3].startswith("plugins[3].path: cannot load path")
    assert problems[4] == "plugins[4].config.greeting: required key missing"


def test_a_plugin_that_fails_to_start_is_a_configuration_problem(tmp_path):
    code = "class Plugin:\n    def __init__(self):\n        raise OSError('no archive dir')\n"
    assert _problems(tmp_path, '[[plugins]]\npath = "p.py"\n', **{"p.py": code}) == [
        "plugins[0]: plugin p failed to start: OSError: no archive dir"
    ]


def test_a_plugin_without_settings_takes_no_keys(tmp_path):
    code = "class Plugin:\n    pass\n"
    entries = '[[plugins]]\npath = "p.py"\n[plugins.config]\nx = 1\n'
    assert _problems(tmp_path, entries, **{"p.py": code}) == [
        "plugins[0].config.x: unknown key (this plugin takes no settings)"
    ]


def test_every_load_reads_the_code_again(tmp_path):
    path = _config(
        tmp_path, '[[plugins]]\npath = "p.py"\n', **{"p.py": "class Plugin:\n    N = 1\n"}
    )
    config = load_config(path)
    assert load_plugins(config)[0].instance.N == 1
    (tmp_path / "p.py").write_text("class Plugin:\n    N = 2\n")
    assert load_plugins(config)[0].instance.N == 2


def test_a_module_attribute_names_the_class(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(
        "class Hook:\n    def rcpt(self, s, r, p):\n        return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(_config(tmp_path, '[[plugins]]\nmodule = "mine:Hook"\n'))
    (plugin,) = load_plugins(config)
    assert type(plugin.instance).__name__ == "Hook" and config.plugins[0].name == "mine"


def test_an_entry_point_of_an_installed_package_is_found_and_reimported(tmp_path, monkeypatch):
    # What `pip install` leaves: the module, and a dist-info naming the entry point.
    (tmp_path / "gatepkg.py").write_text(
        "class Gate:\n    N = 1\n    def mail(self, s, a, p):\n        return None\n"
    )
    info = tmp_path / "gatepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gatepkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pigeon.plugins]\ngate = gatepkg:Gate\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(_config(tmp_path, '[[plugins]]\nentry_point = "gate"\n'))
    (plugin,) = load_plugins(config)
    assert type(plugin.instance).__name__ == "Gate" and plugin.instance.N == 1
    assert config.plugins[0].name == "gate"
    (tmp_path / "gatepkg.py").write_text("class Gate:\n    N = 2\n")
    assert load_plugins(config)[0].instance.N == 2  # a reload imports it again
