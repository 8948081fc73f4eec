"""`tinygrad-np serve` from the command line: what is checked before any training, and IPv6 end to end."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import require

from tinygrad_np.cli import main
from tinygrad_np.serialization import save_model
from tinygrad_np.spec import TUTORIAL_SPEC, model_from_spec

REPO = Path(__file__).resolve().parents[1]
TRAINING = "training a quick MLP"  # what serve says before it trains a default model


def run_main(capsys, *argv: str) -> tuple[int, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    return status, capsys.readouterr().err


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_one_line_naming_the_option_before_training(capsys, port):
    """The range is checked once, by serve.listen(); the command line names the option (issue 13: OverflowError)."""
    status, err = run_main(capsys, "serve", "--port", port)
    assert status == 2 and "Traceback" not in err and TRAINING not in err
    (line,) = err.splitlines()
    expected = "tinygrad-np serve: error: --port: port must be a whole number 0..65535 (0: any free port)"
    assert line == f"{expected}, got {port}"


def test_a_port_that_is_no_number_is_refused_by_the_parser(capsys):
    status, err = run_main(capsys, "serve", "--port", "http")
    (line,) = err.splitlines()
    assert status == 2 and line.startswith("tinygrad-np serve: error: argument --port: expected a whole number, got")


def test_a_port_in_use_fails_before_training(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        status, err = run_main(capsys, "serve", "--port", str(port))
    assert status == 2 and TRAINING not in err
    (line,) = err.splitlines()
    assert line == (
        f"tinygrad-np serve: error: cannot serve on 127.0.0.1 port {port}: port {port} is already in use there "
        "(another server?); choose another port, or 0 for any free one"
    )


def test_an_unknown_host_fails_before_training(capsys):
    status, err = run_main(capsys, "serve", "--host", "no-such-host.invalid", "--port", "0")
    assert status == 2 and TRAINING not in err
    (line,) = err.splitlines()
    assert line.startswith("tinygrad-np serve: error: cannot serve on 'no-such-host.invalid': not an address")


def test_without_pillow_serve_says_what_to_install_before_training():
    """Issue 15: with only `.[mnist]` installed the page loaded, then every drawing got a 500."""
    code = (
        "import sys\n"
        "sys.modules['PIL'] = sys.modules['PIL.Image'] = None  # as if Pillow were not installed\n"
        "from tinygrad_np.cli import main\n"
        "sys.exit(main(['serve', '--port', '0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and TRAINING not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("tinygrad-np serve: error: the digit demo needs Pillow to scale drawings: ")
    assert 'pip install "tinygrad-np[web]"' in line


def test_serve_on_ipv6_loopback_from_the_command_line(tmp_path):
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        require(False, f"this machine has no IPv6 loopback ({exc})")
    model_file = save_model(model_from_spec(TUTORIAL_SPEC), tmp_path / "model.npz")
    command = [sys.executable, "-m", "tinygrad_np", "serve", "--model-file", str(model_file), "--host", "::1",
               "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        line = process.stdout.readline()
        match = re.search(r"at (http://\[::1\]:\d+/)", line)
        assert match, line + (process.stderr.read() if process.poll() is not None else "")
        with urllib.request.urlopen(match.group(1) + "api/info", timeout=10) as response:
            assert json.loads(response.read()) == {"banner": f"model: {model_file}"}
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert "warning" not in process.communicate()[0]  # ::1 is loopback: no "other machines can reach it"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
