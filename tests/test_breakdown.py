"""solbench breakdown: an implementation's time split by kernel (here by CPU operator: the tests
run without a GPU), and clear errors for what it cannot profile."""
import json

import pytest
import torch

from solbench.breakdown import profile_shape
from solbench.cli import main


def test_cpu_breakdown_names_each_operator_once_a_call():
    b = profile_shape("silu_and_mul", "0", "torch_eager", device="cpu", iters=4)
    names = {line.name: line for line in b.lines}
    assert {"aten::silu", "aten::mul"} <= set(names)
    assert names["aten::silu"].launches_per_call == 1 and names["aten::mul"].launches_per_call == 1
    assert sum(line.share for line in b.lines) == pytest.approx(1.0)
    assert b.total_us_per_call == pytest.approx(sum(line.us_per_call for line in b.lines))
    assert [line.us_per_call for line in b.lines] == sorted((line.us_per_call for line in b.lines), reverse=True)


def test_cli_prints_a_table_or_json(capsys):
    assert main(["breakdown", "--op", "silu_and_mul", "--shapes", "0,1", "--impl", "torch_eager", "--device", "cpu",
                 "--iters", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["shape_id"] for r in rows] == ["0", "1"] and all(r["lines"] for r in rows)
    assert main(["breakdown", "--op", "silu_and_mul", "--shapes", "0", "--impl", "torch_eager", "--device", "cpu",
                 "--iters", "2"]) == 0
    captured = capsys.readouterr()
    assert "aten::silu" in captured.out and "timer of record is `solbench run`" in captured.err


@pytest.mark.parametrize("argv,message", [
    (["--op", "silu_and_mul", "--shapes", "999"], "has no shape 999"),
    (["--op", "silu_and_mul", "--shapes", "0", "--impl", "nope"], "has no implementation 'nope'"),
    (["--op", "silu_and_mul", "--shapes", "0", "--iters", "0"], "--iters must be >= 1"),
    (["--op", "silu_and_mul", "--shapes", ","], "--shapes needs at least one shape id"),
])
def test_bad_requests_say_why(argv, message, capsys):
    assert main(["breakdown", "--device", "cpu", "--impl", "torch_eager", *argv] if "--impl" not in argv
                else ["breakdown", "--device", "cpu", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_says_so(capsys):
    assert main(["breakdown", "--op", "silu_and_mul", "--shapes", "0", "--impl", "torch_eager"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
