"""``solbench run --cluster`` errors that need no running cluster: each is a clear message and exit 2."""
import sys

import pytest

from solbench import cli

RUN = ["run", "--ops", "silu_and_mul", "--impls", "torch_eager"]


def test_without_ray_the_message_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert cli.main(RUN + ["--cluster", "local:2"]) == 2
    assert "pip install 'solbench[cluster]'" in capsys.readouterr().err


def test_local_needs_a_worker_count(capsys):
    assert cli.main(RUN + ["--cluster", "local:0"]) == 2
    assert "local:N needs a number of workers N >= 1" in capsys.readouterr().err


def test_unreachable_address_is_a_clear_error_and_exit_2(capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'solbench[cluster]')")
    # Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    assert cli.main(RUN + ["--cluster", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in err and "ray start --head" in err


def test_eval_cluster_needs_a_batch(capsys):
    assert cli.main(["eval", "cand.py", "--op", "silu_and_mul", "--cluster", "local:2"]) == 2
    assert "needs --batch DIR" in capsys.readouterr().err
