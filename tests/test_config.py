"""Configuration: YAML, environment overrides, clear errors, the shipped examples, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.config import load_config
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_documented_keys_work_as_written(tmp_path: Path):
    path = write(
        tmp_path,
        "listen:\n  host: 0.0.0.0\n  port: 8080\nupstream:\n  url: http://gpu-box:11434/\n"
        "store:\n  path: /data/mem\n  url: http://chroma:8000\n"
        "embedder:\n  kind: openai\n  model: bge-m3\nadmin:\n  token: t0ken\n"
        "auth:\n  tokens_file: /etc/symbiotic-memory/tokens\n",
    )
    config = load_config(path, env={})
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8080)
    assert config.upstream.url == "http://gpu-box:11434"
    assert str(config.store.path) == "/data/mem" and config.store.url == "http://chroma:8000"
    assert (config.embedder.kind, config.embedder.model_name) == ("openai", "bge-m3")


def test_defaults():
    config = load_config(None, env={})
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 11435)
    assert config.upstream.url == "http://127.0.0.1:11434"
    assert config.embedder.model_name == "nomic-embed-text"
    assert "symbiotic-memory" in str(config.store.path)


def test_unknown_key_names_key_and_file(tmp_path: Path):
    path = write(tmp_path, "listen:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'listen\.prot'"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(write(tmp_path, "colour: blue\n"), env={})


def test_invalid_value_and_yaml_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"invalid value for 'listen\.port'"):
        load_config(write(tmp_path, "listen:\n  port: lots\n"), env={})
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "listen: [\n"), env={})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml", env={})
    with pytest.raises(ConfigError, match="must contain the placeholder"):
        load_config(write(tmp_path, "memory:\n  template: no placeholder\n"), env={})


def test_environment_overrides_file(tmp_path: Path):
    path = write(tmp_path, "listen:\n  port: 8080\n")
    env = {
        "SYMBIOTIC_MEMORY__LISTEN__PORT": "9090",
        "SYMBIOTIC_MEMORY__EMBEDDER__KIND": "sentence-transformers",
        "SYMBIOTIC_MEMORY__MEMORY__ENABLED": "false",
        "OTHER": "ignored",
    }
    config = load_config(path, env=env)
    assert config.listen.port == 9090
    assert config.embedder.kind == "sentence-transformers"
    assert config.memory.enabled is False
    with pytest.raises(ConfigError, match="SYMBIOTIC_MEMORY__LISTEN__PROT: unknown key"):
        load_config(path, env={"SYMBIOTIC_MEMORY__LISTEN__PROT": "1"})


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path):
    load_config(path, env={})


def test_cli_reports_config_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write(tmp_path, "listen:\n  prot: 1\n")
    assert main(["config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key 'listen.prot'" in err


def test_console_script_prints_effective_config(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "config"],
        capture_output=True,
        text=True,
        env={"SYMBIOTIC_MEMORY__LISTEN__PORT": "1234", "PATH": ""},
        check=True,
    )
    assert '"port": 1234' in out.stdout


def test_readme_shows_the_real_help(capsys: pytest.CaptureFixture[str]):
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- help:start -->\n```\n")[1].split("```\n<!-- help:end -->")[0]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out == shown


def test_listening_beyond_loopback_needs_authenticated_users(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"listen.host 0\.0\.0\.0 is reachable.*auth\."):
        load_config(write(tmp_path, "listen:\n  host: 0.0.0.0\n"), env={})
    with pytest.raises(ConfigError, match=r"auth\.tokens_file"):  # admin.token is not enough
        env = {
            "SYMBIOTIC_MEMORY__LISTEN__HOST": "192.168.1.5",
            "SYMBIOTIC_MEMORY__ADMIN__TOKEN": "x",
        }
        load_config(None, env=env)
    load_config(None, env={"SYMBIOTIC_MEMORY__LISTEN__HOST": "::1"})
    env = {"SYMBIOTIC_MEMORY__LISTEN__HOST": "0.0.0.0", "SYMBIOTIC_MEMORY__AUTH__TOKENS_FILE": "t"}
    config = load_config(None, env=env)
    assert str(config.auth.tokens_file) == "t"
