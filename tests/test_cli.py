import subprocess
import sys

from typer.testing import CliRunner

from mmoe import __version__, available_models
from mmoe.cli import app

runner = CliRunner()


def test_version_and_models():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"mmoe {__version__}"
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    listed = [line.split()[0] for line in res.output.strip().splitlines()
              if not line.startswith(" ")]  # indented: a model's options
    assert listed == list(available_models())


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "mmoe", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "reproduce" in out and "models" in out


def test_unknown_command_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "mmoe", "nonsense"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
