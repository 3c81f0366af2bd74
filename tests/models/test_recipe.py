"""The seq2seq recipe end to end: training, resume, checkpoints, the tinygrad-tf command."""
import builtins
import contextlib
import importlib.util
import io
import json
import os
import signal

import numba
import numpy as np
import pytest

from tinygrad_tf.kernels import threads
from tinygrad_tf.models import checkpoint, cli, evaluation
from tinygrad_tf.models import train as recipe
from tinygrad_tf.models.train import TrainConfig
from tinygrad_tf.models.transformer import Transformer, TransformerConfig

# A copy task small enough for the tiny preset to learn in a few hundred steps.
COPY = dict(task="copy", task_options=dict(vocab=6, max_len=6), n_train=2000, n_valid=64,
            n_test=64, warmup_steps=200, batch_size=64, max_tokens=None, log_every=50)


def _quick(run_dir, **overrides):
    """A very short run: a few steps of a tiny copy model, for plumbing tests."""
    settings = dict(COPY, run_dir=str(run_dir), n_train=96, n_valid=8, n_test=8, batch_size=16,
                    steps=6, eval_every=1000, eval_decode=8, log_every=2)
    return TrainConfig(**{**settings, **overrides})


def _losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as file:
        records = [json.loads(line) for line in file]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory):
    """The tiny preset trained on `copy` until validation exact match reaches 100%."""
    run_dir = tmp_path_factory.mktemp("copy") / "run"
    # warmup 100, not COPY's 200: the higher peak rate reaches 100% in about 600 steps, not 800.
    # 128 validation pairs, not 64: stopping at the first 100% on 64 left the held-out score at
    # the mercy of rounding (seeds 0-5 scored 0.97-1.0, and a reassociated layer norm backward
    # took seed 0 from 1.0 to 0.92); with 128, seeds 0-5 and that variant all score 1.0, and
    # seed 0 still stops at step 600 (bench/RESULTS.md, 7 Dec, lead).
    config = TrainConfig(**{**COPY, "warmup_steps": 100, "n_valid": 128}, run_dir=str(run_dir),
                         steps=1500, eval_every=100, target_exact_match=1.0)
    # On one thread (Numba's and OpenBLAS's): the tiny model's kernels and GEMMs are too small
    # for a second one to pay, and in a full run the other core compiles kernels or runs the
    # other half of the suite (tests/conftest.py). 7.1-7.4 s and 9 s of CPU at one thread against
    # 7.7-8.9 s and 15-16 s at two (7 Dec, bench/RESULTS.md, helper suite5); the same steps.
    with open(os.devnull, "w") as quiet, _one_thread():
        summary = recipe.train(config, out=quiet)
    return run_dir, summary


@contextlib.contextmanager
def _one_thread():
    """Numba's (this thread's) and OpenBLAS's thread counts at 1 inside the block."""
    blas_set, blas_get = threads._blas()
    numba_before, blas_before = numba.get_num_threads(), blas_get()
    numba.set_num_threads(1)
    blas_set(1)
    try:
        yield
    finally:
        numba.set_num_threads(numba_before)
        if blas_before is not None:
            blas_set(blas_before)


@pytest.mark.slow
def test_tiny_model_learns_copy_to_full_exact_match(copy_run, capsys):
    run_dir, summary = copy_run
    assert summary["status"] == "reached target", summary
    assert summary["best"]["exact_match"] == 1.0
    # Held out: the test split's sources never appear in training.
    assert cli.main(["evaluate", str(run_dir), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["exact_match"] >= 0.98 and result["n_pairs"] == 64
    expected = ["config.json", "vocab.json", "metrics.jsonl", "samples.txt",
                "checkpoints/best.safetensors", "checkpoints/best.json"]
    if importlib.util.find_spec("matplotlib") is not None:  # the plot needs the recipe extra
        expected.append("plot.png")
    for name in expected:
        assert (run_dir / name).exists(), name


@pytest.mark.slow
def test_translate_round_trips_through_the_saved_run(copy_run, capsys, monkeypatch):
    run_dir, _ = copy_run
    assert cli.main(["translate", str(run_dir), "abcd", "fed"]) == 0
    assert capsys.readouterr().out.split() == ["abcd", "fed"]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("cab\nbbf\n"))
    assert cli.main(["translate", str(run_dir), "--beam", "3", "--checkpoint", "last"]) == 0
    assert capsys.readouterr().out.split() == ["cab", "bbf"]
    model, tokenizer, _, _ = recipe.load_run(str(run_dir))
    cached = recipe.decode_texts(model, tokenizer, ["eacd", "a"], use_cache=True)
    assert cached == recipe.decode_texts(model, tokenizer, ["eacd", "a"], use_cache=False)


@pytest.mark.slow
def test_average_of_checkpoints_is_usable(copy_run, capsys):
    run_dir, _ = copy_run
    assert cli.main(["average", str(run_dir), "--last", "3"]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    averaged, _, info = checkpoint.load(str(run_dir / "checkpoints" / "average.safetensors"))
    found = checkpoint.step_checkpoints(str(run_dir / "checkpoints"))[-3:]
    states = [checkpoint.load(path)[0] for _, path in found]
    name = next(iter(averaged))
    np.testing.assert_allclose(averaged[name], np.mean([s[name] for s in states], axis=0),
                               rtol=1e-6, atol=1e-7)
    assert info["averaged_steps"] == [step for step, _ in found]
    assert cli.main(["evaluate", str(run_dir), "--checkpoint", "average", "--limit", "8"]) == 0
    assert "exact match" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_losses(tmp_path):
    # 96 pairs in batches of 16: the 12 steps cross an epoch boundary; dropout draws every step.
    whole = _quick(tmp_path / "whole", steps=12)
    recipe.train(whole, out=open(os.devnull, "w"))
    first = _quick(tmp_path / "parts", steps=5)
    recipe.train(first, out=open(os.devnull, "w"))
    recipe.train(_quick(tmp_path / "parts", steps=12), resume=True, out=open(os.devnull, "w"))
    assert _losses(tmp_path / "parts") == _losses(tmp_path / "whole")
    assert [step for step, _ in _losses(tmp_path / "whole")] == list(range(1, 13))


@pytest.mark.slow
def test_a_killed_save_leaves_the_last_checkpoint_readable(tmp_path, monkeypatch):
    config = _quick(tmp_path / "run", steps=4, save_every=2)
    trainer = recipe.Trainer(config, out=open(os.devnull, "w"))
    trainer.run()
    directory = str(tmp_path / "run" / "checkpoints")
    assert [step for step, _ in checkpoint.step_checkpoints(directory)] == [2, 4]

    # The process dies while writing step 5's file: the rename never happens.
    def killed(*args):
        raise KeyboardInterrupt("killed during save")

    trainer.step = 5
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            trainer.save()
    # A torn file from a non-atomic writer (or a disk error) is skipped with a warning.
    (tmp_path / "run" / "checkpoints" / "step_00000006.safetensors").write_bytes(b"\x10\x00\x00")
    warnings = []
    path, (model_state, optimizer_state, info) = checkpoint.latest(directory, warn=warnings.append)
    assert info["step"] == 4 and path.endswith("step_00000004.safetensors")
    assert "step_00000006" in warnings[0] and optimizer_state["state"]
    assert not [name for name in os.listdir(directory) if name.startswith(".tmp")]
    recipe.train(_quick(tmp_path / "run", steps=6), resume=True, out=open(os.devnull, "w"))
    assert [step for step, _ in _losses(tmp_path / "run")] == list(range(1, 7))


@pytest.mark.slow
def test_after_resume_best_and_average_come_from_the_live_timeline(tmp_path):
    # Regression: best.safetensors saved after the resume point (here: step 4's validation, whose
    # step checkpoint was then lost) stayed the "best" of a run resumed at step 2.
    run = tmp_path / "run"
    recipe.train(_quick(run, steps=4, eval_every=2, save_every=2, average_last=2),
                 out=open(os.devnull, "w"))
    directory = run / "checkpoints"
    checkpoint.save(str(directory / "best.safetensors"),
                    *checkpoint.load(str(directory / "step_00000004.safetensors")))
    (directory / "step_00000004.safetensors").write_bytes(b"\x10\x00\x00")  # torn by a crash
    assert checkpoint.read_info(str(directory / "best.safetensors"))["step"] == 4
    summary = recipe.train(_quick(run, steps=2, eval_every=2, save_every=2, average_last=2),
                           resume=True, out=open(os.devnull, "w"))
    assert summary["step"] == 2 and summary["best"]["step"] == 2
    best = checkpoint.load(str(directory / "best.safetensors"))
    step_2 = checkpoint.load(str(directory / "step_00000002.safetensors"))
    assert best[2]["step"] == 2
    for name in best[0]:
        np.testing.assert_array_equal(best[0][name], step_2[0][name])
    assert [step for step, _ in checkpoint.step_checkpoints(str(directory))] == [2]
    assert checkpoint.read_info(str(directory / "average.safetensors"))["averaged_steps"] == [2]
    assert summary["final"]["scores"]["best"]["step"] == 2
    # A best whose step checkpoint is no longer kept cannot be restored: it is dropped, and the
    # next validation chooses the best again.
    model_state, optimizer_state, info = step_2
    info["best"]["step"] = 1
    checkpoint.save(str(directory / "step_00000002.safetensors"), model_state, optimizer_state, info)
    trainer = recipe.Trainer(_quick(run, steps=2), resume=True, out=open(os.devnull, "w"))
    assert trainer.best is None and not (directory / "best.safetensors").exists()


@pytest.mark.slow
def test_nan_loss_stops_clearly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real_loss = recipe.loss_of
    calls = []

    def poisoned(model, batch, label_smoothing):
        loss, logits = real_loss(model, batch, label_smoothing)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 4 else loss), logits

    monkeypatch.setattr(recipe, "loss_of", poisoned)
    run_dir = str(tmp_path / "run")
    status = cli.main(["train", "--task", "copy", "--run-dir", run_dir, "--steps", "6",
                       "--save-every", "2", "--n-train", "64", "--n-valid", "4", "--n-test", "4",
                       "--batch-size", "16"])
    assert status == 1
    error = capsys.readouterr().err
    assert "loss became nan at step 4" in error and "step_00000002.safetensors" in error
    assert checkpoint.load(os.path.join(run_dir, "checkpoints", "step_00000002.safetensors"))[2][
        "step"] == 2


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_then_exits(tmp_path, monkeypatch, capsys):
    real_loss = recipe.loss_of
    calls = []

    def interrupting(model, batch, label_smoothing):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
        return real_loss(model, batch, label_smoothing)

    monkeypatch.setattr(recipe, "loss_of", interrupting)
    run_dir = str(tmp_path / "run")
    status = cli.main(["train", "--task", "copy", "--run-dir", run_dir, "--steps", "50",
                       "--n-train", "64", "--n-valid", "4", "--n-test", "4", "--batch-size", "16"])
    assert status == 130
    assert "--resume" in capsys.readouterr().out
    found = checkpoint.step_checkpoints(os.path.join(run_dir, "checkpoints"))
    assert [step for step, _ in found] == [3]


def test_progress_is_json_lines_without_a_terminal(tmp_path, capsys):
    summary = recipe.train(_quick(tmp_path / "run", steps=4, eval_every=2))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    assert [line["step"] for line in lines if "tokens_per_s" in line] == [2, 4]
    valid = [line for line in lines if line.get("kind") == "valid"]
    assert [line["step"] for line in valid] == [2, 4]
    assert {"loss", "token_accuracy", "exact_match", "bleu"} <= set(valid[0])
    assert summary["step"] == 4 and summary["status"] == "finished"
    # Each step's record carries the training time so far (bench/recipe_step.py reads it).
    with open(os.path.join(summary["run_dir"], "metrics.jsonl")) as file:
        elapsed = [r["elapsed"] for r in map(json.loads, file) if r["kind"] == "train"]
    assert len(elapsed) == 4 and all(b > a > 0 for a, b in zip(elapsed, elapsed[1:]))
    assert elapsed[-1] == pytest.approx(summary["elapsed"], abs=1e-5)


def test_training_works_without_the_optional_extras(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__
    missing = {"tqdm", "tqdm.auto", "sacrebleu", "matplotlib", "matplotlib.pyplot"}

    def without_extras(name, *args, **kwargs):
        if name in missing:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_extras)
    from tinygrad_tf.models import progress
    monkeypatch.setattr(progress, "_plot_warned", [])
    summary = recipe.train(_quick(tmp_path / "run", steps=2))
    out = capsys.readouterr().out
    assert "no plot: install matplotlib" in out
    assert summary["last_valid"]["bleu"] is None
    assert "install sacrebleu" in summary["last_valid"]["bleu_signature"]
    assert not (tmp_path / "run" / "plot.png").exists()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert cli.main(["train", "--task", "copy", "--run-dir", str(tmp_path / "a")]) == 1
    assert "give a budget" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("one\tuno\ntwo dos\n", encoding="utf-8")
    assert cli.main(["train", "--train-file", str(bad), "--steps", "1",
                     "--run-dir", str(tmp_path / "b")]) == 1
    assert "bad.tsv:2: no tab" in capsys.readouterr().err
    assert cli.main(["translate", str(tmp_path), "x"]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert cli.main(["train", "--task", "copy", "--steps", "1", "--run-dir", str(tmp_path / "c"),
                     "--max-len", "4", "--max-length", "8"]) == 1
    assert "--max-len" in capsys.readouterr().err


def test_cli_bad_files_and_edited_config_give_one_line_not_a_traceback(tmp_path, capsys,
                                                                       monkeypatch):
    def one_line_error(argv, expected):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and err.count("\n") == 1, err
    one_line_error(["train", "--train-file", str(tmp_path), "--steps", "1", "--run-dir",
                    str(tmp_path / "a")], "is a directory")
    unreadable = tmp_path / "locked.tsv"
    unreadable.write_text("a\tb\n", encoding="utf-8")
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == str(unreadable):
            raise PermissionError(13, "Permission denied", str(unreadable))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", refusing_open)  # chmod 000 does not stop root
    one_line_error(["train", "--train-file", str(unreadable), "--steps", "1", "--run-dir",
                    str(tmp_path / "b")], "cannot read it (Permission denied)")
    monkeypatch.undo()
    run = tmp_path / "run"
    run.mkdir()
    for content, reason in (("{not json", "not a valid run config"),
                            ('{"train": {"steps": 1, "no_such_option": 3}, "model": {}}',
                             "no_such_option"),
                            ('{"model": {}}', "missing entry 'train'"),
                            ('{"train": {"steps": 1, "schedule": "cosine"}, "model": {}}',
                             "unknown schedule")):
        (run / "config.json").write_text(content, encoding="utf-8")
        one_line_error(["train", "--resume", str(run), "--steps", "2"], reason)
        one_line_error(["evaluate", str(run)], reason)


def test_too_small_train_file_fails_clearly_and_leaves_no_run_directory(tmp_path, capsys):
    # Regression: one pair gave "zero-size array to reduction operation maximum which has no
    # identity" and left RUN/checkpoints/ and RUN/vocab.json behind.
    (tmp_path / "one.tsv").write_text("a b\tc\n", encoding="utf-8")
    assert cli.main(["train", "--train-file", str(tmp_path / "one.tsv"), "--steps", "1",
                     "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "one.tsv: only 1 pair" in err and "at least 2 pairs" in err and "--valid-file" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
    # Any error found while setting up (here: a sequence longer than --max-len) writes nothing.
    assert cli.main(["train", "--task", "copy", "--steps", "1", "--run-dir", str(tmp_path / "c"),
                     "--max-len", "4", "--max-length", "8"]) == 1
    assert "--max-len" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_train_file_with_blank_lines_is_accepted(tmp_path, capsys):
    from tinygrad_tf.models import data
    pairs = [(f"{a} plus {b}", f"{a + b}") for a in range(5) for b in range(5)]
    data.save_tsv(tmp_path / "train.tsv", pairs)
    with open(tmp_path / "train.tsv", "a", encoding="utf-8") as file:
        file.write("\n")  # the trailing blank line many editors leave
    assert cli.main(["train", "--train-file", str(tmp_path / "train.tsv"), "--tokenizer", "word",
                     "--steps", "1", "--batch-size", "8", "--run-dir", str(tmp_path / "r")]) == 0
    assert "train.tsv: skipped 1 blank line" in capsys.readouterr().err


def test_train_from_tsv_files_with_word_tokens(tmp_path, capsys):
    from tinygrad_tf.models import data
    pairs = [(f"{a} plus {b}", f"{a + b}") for a in range(10) for b in range(10)]
    data.save_tsv(tmp_path / "train.tsv", pairs)
    data.save_tsv(tmp_path / "test.tsv", pairs[:5])
    run_dir = str(tmp_path / "run")
    assert cli.main(["train", "--train-file", str(tmp_path / "train.tsv"), "--test-file",
                     str(tmp_path / "test.tsv"), "--tokenizer", "word", "--steps", "2",
                     "--batch-size", "8", "--run-dir", run_dir]) == 0
    capsys.readouterr()
    with open(os.path.join(run_dir, "vocab.json")) as file:
        assert json.load(file)["kind"] == "word"
    assert cli.main(["evaluate", run_dir, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 5


def test_parameter_counts_match_the_built_models():
    for config in (TransformerConfig.tiny(64), TransformerConfig.tiny(50, norm_first=True),
                   TransformerConfig(40, 30, d_model=16, n_heads=2, n_encoder_layers=1,
                                     n_decoder_layers=3, d_ff=24)):
        assert cli.count_parameters(config) == Transformer(config).num_parameters()


def test_doctor_reports_versions_kernels_and_presets(capsys, monkeypatch):
    # The real kernels.warmup() compiles all Numba kernels for float32 and float64: 80 s or more
    # before Numba's disk cache holds them (a fresh venv or worktree). Compiling is what the
    # kernel tests check; here a stub reports one kernel and the training step runs on the numpy
    # twins, so nothing compiles and every line of the report is still printed and checked.
    from tinygrad_tf import kernels
    warmups = []

    def warmup():
        warmups.append(1)
        return {"_gemm/float32": {"seconds": 1.25, "source": "compiled"}, "total_seconds": 1.25}

    monkeypatch.setattr(kernels, "warmup", warmup)
    with kernels.use("numpy"):
        assert cli.main(["doctor"]) == 0
        out = capsys.readouterr().out
        assert cli.main(["doctor", "--quick"]) == 0
        quick = capsys.readouterr().out
    for expected in ("numpy", "numba", "kernels", "active", "threads", "first tiny training step",
                     "63,082,496   paper: 65M", "214,245,376   paper: 213M",
                     "kernels.warmup(): 1.25 s for 1 kernels (1 compiled)"):
        assert expected in out, expected
    assert warmups == [1] and "kernels.warmup(): skipped (--quick)" in quick
    assert "first tiny training step" in quick


def test_engine_nn_and_models_import_no_optional_extra():
    import subprocess
    import sys
    code = ("import sys, tinygrad_tf, tinygrad_tf.nn, tinygrad_tf.models, tinygrad_tf.models.cli; "
            "print([m for m in ('tqdm', 'sacrebleu', 'matplotlib', 'tokenizers', 'torch') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- the paper's defaults

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Six steps of the tiny copy model, a step checkpoint each, the last 3 averaged."""
    run_dir = tmp_path_factory.mktemp("quick") / "run"
    with open(os.devnull, "w") as quiet:
        summary = recipe.train(_quick(run_dir, save_every=1, keep_checkpoints=2, average_last=3),
                               out=quiet)
    return run_dir, summary


def test_training_ends_by_averaging_and_choosing_the_final_model(quick_run):
    run_dir, summary = quick_run
    directory = str(run_dir / "checkpoints")
    found = checkpoint.step_checkpoints(directory)
    assert [step for step, _ in found] == [4, 5, 6]  # average_last 3 outranks keep_checkpoints 2
    averaged, _, info = checkpoint.load(os.path.join(directory, "average.safetensors"))
    assert info["averaged_steps"] == [4, 5, 6]
    states = [checkpoint.load(path)[0] for _, path in found]
    for name in averaged:
        np.testing.assert_allclose(averaged[name], np.mean([s[name] for s in states], axis=0),
                                   rtol=1e-6, atol=1e-7)
    with open(run_dir / "final.json") as file:
        final = json.load(file)
    assert final == summary["final"] and set(final["scores"]) == {"best", "average"}
    best, average = final["scores"]["best"], final["scores"]["average"]
    # The average is scored as validation scores the best: the same split and decoding.
    model, tokenizer, config, _ = recipe.load_run(str(run_dir), "average")
    again = recipe.evaluate_pairs(model, tokenizer, recipe.load_splits(config).valid,
                                  decode_limit=config.eval_decode)
    assert again["loss"] == pytest.approx(average["loss"]) and average["steps"] == [4, 5, 6]
    winner = ("average" if (average["exact_match"], -average["loss"])
              >= (best["exact_match"], -best["loss"]) else "best")
    assert final["checkpoint"] == winner and final["path"] == f"checkpoints/{winner}.safetensors"
    assert summary["checkpoint"] == str(run_dir / final["path"]) and final["reason"]
    for name in ("greedy", "beam"):  # the final model's test score, both decodings, timed
        assert summary["test"][name]["seconds"] > 0 and 0 <= summary["test"][name][
            "exact_match"] <= 1
    assert summary["test"]["n_pairs"] == 8


def test_evaluate_and_translate_default_to_the_final_model(quick_run, monkeypatch):
    run_dir, _ = quick_run
    with open(run_dir / "final.json") as file:
        final = json.load(file)
    assert recipe.load_run(str(run_dir))[3]["checkpoint"] == final["checkpoint"]
    for choice in ("average", "best"):  # whatever final.json names is what loads
        monkeypatch.setattr(recipe, "final_checkpoint", lambda run, choice=choice: choice)
        model = recipe.load_run(str(run_dir))[0]
        expected = checkpoint.load(str(run_dir / "checkpoints" / f"{choice}.safetensors"))[0]
        name = next(iter(expected))
        np.testing.assert_array_equal(model.state_dict()[name].array, expected[name])
    monkeypatch.undo()
    os.rename(run_dir / "final.json", run_dir / "final.json.away")  # a run from before
    try:
        assert recipe.load_run(str(run_dir))[3]["checkpoint"] == "best"
    finally:
        os.rename(run_dir / "final.json.away", run_dir / "final.json")
    assert recipe.load_run(str(run_dir), "last")[3]["step"] == 6


def test_averaging_off_keeps_the_best_checkpoint(tmp_path):
    summary = recipe.train(_quick(tmp_path / "run", steps=2, average_last=0, n_test=0),
                           out=open(os.devnull, "w"))
    assert summary["final"]["checkpoint"] == "best" and "off" in summary["final"]["reason"]
    assert summary["test"] is None  # no test split, no test report
    assert not (tmp_path / "run" / "checkpoints" / "average.safetensors").exists()


def _decodings(monkeypatch):
    """Record the beam size of every decode_texts call (defined in evaluation, re-exported by
    train, where the CLI's translate finds it)."""
    beams, real = [], evaluation.decode_texts

    def recording(model, tokenizer, sources, beam_size=1, *args, **kwargs):
        beams.append(beam_size)
        return real(model, tokenizer, sources, beam_size, *args, **kwargs)

    monkeypatch.setattr(evaluation, "decode_texts", recording)
    monkeypatch.setattr(recipe, "decode_texts", recording)
    return beams


def test_evaluate_and_translate_decode_with_beam_4_by_default(quick_run, monkeypatch, capsys):
    run_dir = str(quick_run[0])
    beams = _decodings(monkeypatch)
    assert cli.main(["evaluate", run_dir, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["beam"] == 4 and beams == [4]
    assert cli.main(["translate", run_dir, "abc"]) == 0
    assert cli.main(["translate", run_dir, "abc", "--beam", "1"]) == 0
    assert beams == [4, 4, 1]


def test_translate_takes_options_and_texts_in_any_order(quick_run, monkeypatch, capsys):
    run_dir = str(quick_run[0])
    beams = _decodings(monkeypatch)
    assert cli.main(["translate", run_dir, "--checkpoint", "last", "abc", "--beam", "1",
                     "bca"]) == 0
    ordered = capsys.readouterr().out.splitlines()
    assert cli.main(["translate", "--beam", "1", "--checkpoint", "last", run_dir, "abc",
                     "bca"]) == 0
    assert capsys.readouterr().out.splitlines() == ordered and len(ordered) == 2
    assert beams == [1, 1]
    assert cli.main(["translate", run_dir, "--checkpoint", "nowhere.safetensors", "abc"]) == 1
    assert "nowhere.safetensors" in capsys.readouterr().err


def test_translate_warns_once_with_a_count_of_unknown_characters(quick_run, capsys):
    run_dir = str(quick_run[0])
    assert cli.main(["translate", run_dir, "--beam", "1", "abééé", "cé", "abc"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 3
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "4 input character(s)" in warnings[0], captured.err
    assert "'é'" in warnings[0]
    assert cli.main(["translate", run_dir, "--beam", "1", "abc"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_translate_skips_a_bad_line_with_a_warning_and_keeps_lines_aligned(quick_run, capsys,
                                                                          monkeypatch):
    # Regression: bad UTF-8 in stdin raised UnicodeDecodeError out of main (a traceback), and a
    # line too long for the model stopped the whole chunk with the positional table's error.
    run_dir = str(quick_run[0])
    seen = []

    def upper(model, tokenizer, sources, *args, **kwargs):  # outputs that show their input
        seen.extend(sources)
        return [text.upper() for text in sources]

    monkeypatch.setattr(recipe, "decode_texts", upper)
    lines = [b"abc", b"", b"ab\xffc", b"a" * 300, "c\u00e9".encode(), b"cab\r"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n"),
                                                      encoding="utf-8"))
    assert cli.main(["translate", run_dir]) == 1
    captured = capsys.readouterr()
    assert captured.out.split("\n") == ["ABC", "", "", "", "C\u00c9", "CAB", ""]
    assert seen == ["abc", "c\u00e9", "cab"]
    err = captured.err.splitlines()
    assert "<stdin>:3: not valid UTF-8 (invalid start byte at byte 2 of the line)" in err[0]
    assert "<stdin>:4: 301 tokens (with <eos>), more than the model's max_len" in err[1]
    assert "2 of 6 input line(s) could not be translated" in err[-1] and "Traceback" not in \
        captured.err


def test_translate_draws_attention_maps(quick_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run_dir = str(quick_run[0])
    assert cli.main(["translate", run_dir, "abc", "--attention", str(tmp_path / "m.png")]) == 0
    assert "attention map" in capsys.readouterr().err
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["translate", run_dir, "ab", "ca", "--beam", "1", "--heads", "--attention",
                     str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h_1.png").exists() and (tmp_path / "h_2.png").exists()


def test_attention_maps_without_matplotlib_fail_clearly(quick_run, monkeypatch, capsys):
    real_import = builtins.__import__

    def without_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_matplotlib)
    assert cli.main(["translate", str(quick_run[0]), "abc", "--attention", "x.png"]) == 1
    assert "attention maps need matplotlib" in capsys.readouterr().err


def test_attention_of_a_text_matches_greedy_decoding(quick_run):
    from tinygrad_tf.models.attention_maps import attention_of
    model, tokenizer, _, _ = recipe.load_run(str(quick_run[0]))
    found = attention_of(model, tokenizer, "abc")
    assert found["source_tokens"] == ["a", "b", "c", "<eos>"]
    assert found["output"] == recipe.decode_texts(model, tokenizer, ["abc"])[0]
    L = len(found["output_tokens"])
    assert [a.shape for a in found["attention"]] == [(4, L, 4)] * 2
    np.testing.assert_allclose(sum(a.sum(-1) for a in found["attention"]), 2.0, rtol=1e-6)
