import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))
SMALL_ARGUMENTS = {"mace_interaction.py": ["--atoms", "100", "--channels", "8", "--neighbours", "10"]}
"""Arguments that keep an example whose defaults are benchmark-sized quick."""


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script):
    command = [sys.executable, str(script), *SMALL_ARGUMENTS.get(script.name, [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_there_are_examples():
    assert len(EXAMPLES) >= 2
