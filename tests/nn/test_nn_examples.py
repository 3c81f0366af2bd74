"""The learner-facing examples run and reach what they assert."""
import pathlib
import runpy

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["xor.py", "regression.py", "curvature.py"])
def test_example_runs_and_its_asserts_hold(name, capsys):
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")  # raises if an assert fails
    assert capsys.readouterr().out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_xor_learns_from_other_seeds(seed):
    xor = runpy.run_path(str(EXAMPLES / "xor.py"))
    model, loss = xor["train"](seed=seed)
    assert (xor["predict"](model, xor["INPUTS"]) == xor["TARGETS"]).all() and loss < 0.05
