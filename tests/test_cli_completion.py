"""`cpo-gateway completion bash`: the script, sourced in bash, completes commands at each
level, options, option choices and file names after -c."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = subprocess.run(
        [sys.executable, "-m", "cpo_gateway", "completion", "bash"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    path = tmp_path_factory.mktemp("completion") / "cpo-gateway.bash"
    path.write_text(out)
    return path


def complete(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    """What <TAB> offers after `line` (its last word is being completed; may be empty)."""
    words = line.split(" ")
    program = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_cpo_gateway\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True, text=True, timeout=30, check=True, cwd=cwd,
    )  # fmt: skip
    assert done.stderr == ""
    return sorted(w for w in done.stdout.splitlines() if w)


def test_the_script_registers_the_completion(script: Path) -> None:
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", f"source {script}; complete -p cpo-gateway"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "complete -F _cpo_gateway cpo-gateway"


def test_commands_complete_at_each_level(script: Path) -> None:
    assert complete(script, "cpo-gateway out") == ["outbox"]
    assert complete(script, "cpo-gateway ch") == ["charger", "chargers", "check-config"]
    assert complete(script, "cpo-gateway outbox r") == ["retry"]
    assert complete(script, "cpo-gateway -c gw.toml outbox l") == ["list"]
    assert complete(script, "cpo-gateway chargers ") == [
        "--config", "--help", "-c", "-h", "list", "show",
    ]  # fmt: skip
    assert complete(script, "cpo-gateway backup --f") == ["--force"]
    assert complete(script, "cpo-gateway completion ") == ["--help", "-h", "bash"]


def test_options_and_their_choices_complete(script: Path) -> None:
    assert complete(script, "cpo-gateway sessions list --") == [
        "--config", "--help", "--limit", "--state", "--tsv",
    ]  # fmt: skip
    assert complete(script, "cpo-gateway sessions list --state f") == ["failed", "finished"]


def test_a_config_option_completes_file_names(script: Path, tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text("")
    (tmp_path / "other.txt").write_text("")
    assert complete(script, "cpo-gateway outbox -c gat", cwd=tmp_path) == ["gateway.toml"]
