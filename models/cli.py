"""The `tinygrad-tf` command: train, evaluate, translate, average, doctor.

    tinygrad-tf train --task reverse --run-dir runs/rev --steps 3000
    tinygrad-tf train --train-file train.tsv --valid-file valid.tsv --tokenizer bpe --time-budget 600
    tinygrad-tf train --resume runs/rev --steps 5000
    tinygrad-tf evaluate runs/rev --split test            # final model, beam 4 (--beam 1: greedy)
    echo "abcdef" | tinygrad-tf translate runs/rev
    tinygrad-tf translate runs/rev abcdef --attention maps.png --heads
    tinygrad-tf average runs/rev --last 5
    tinygrad-tf doctor

`main(argv)` returns the exit status, so tests call it directly: 0 done, 1 an error (printed as
one line naming what is wrong), 130 training interrupted by Ctrl-C (after saving a checkpoint).
"""
import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

# What each train flag sets, with its type and help; flags are --name-with-dashes.
_TRAIN_OPTIONS = [
    ("run_dir", str, "the run directory to create (default runs/<task>-<time>)"),
    ("seed", int, "seed of data generation, initialisation, dropout and batch order (0)"),
    ("task", str, "built-in task: copy, reverse, sort, add, dates (reverse)"),
    ("n_train", int, "built-in task: training pairs (20000)"),
    ("n_valid", int, "built-in task: validation pairs (500)"),
    ("n_test", int, "built-in task: test pairs (500)"),
    ("train_file", str, "your training pairs: a TSV file of source<TAB>target lines"),
    ("valid_file", str, "validation TSV (default: a seeded 2%% of --train-file)"),
    ("test_file", str, "test TSV"),
    ("tokenizer", str, "char, word or bpe (char)"),
    ("vocab_size", int, "bpe vocabulary size (8000)"),
    ("min_freq", int, "drop tokens seen fewer times (1)"),
    ("arch", str, "model: transformer, or gru (a GRU encoder-decoder with attention, the "
     "classic baseline) (transformer)"),
    ("preset", str, "model preset: tiny, base, big, or none for explicit sizes (tiny)"),
    ("d_model", int, "model width (preset's)"),
    ("n_heads", int, "attention heads (preset's)"),
    ("n_encoder_layers", int, "encoder layers (preset's)"),
    ("n_decoder_layers", int, "decoder layers (preset's)"),
    ("d_ff", int, "feed-forward width (preset's)"),
    ("dropout", float, "P_drop (0.1)"),
    ("max_len", int, "longest sequence the positional table covers (preset's)"),
    ("beta1", float, "Adam beta1 (0.9)"),
    ("beta2", float, "Adam beta2 (0.98)"),
    ("eps", float, "Adam epsilon (1e-9)"),
    ("schedule", str, "warmup (the paper's) or constant (warmup)"),
    ("warmup_steps", int, "warm-up steps (4000)"),
    ("lr_factor", float, "factor on the warm-up learning rate (1.0)"),
    ("lr", float, "learning rate of the constant schedule (1e-3)"),
    ("label_smoothing", float, "label smoothing epsilon (0.1)"),
    ("clip_norm", float, "clip the global gradient norm to this (off)"),
    ("batch_size", int, "sentences per batch, at most (no cap)"),
    ("max_tokens", int, "padded tokens per side per batch, at most (4096)"),
    ("steps", int, "stop after this many steps"),
    ("time_budget", float, "stop after this many seconds of training"),
    ("target_exact_match", float, "stop once validation exact match reaches this (e.g. 0.99)"),
    ("eval_every", int, "validate every N steps (500)"),
    ("eval_decode", int, "validation pairs decoded for exact match and BLEU (500)"),
    ("save_every", int, "save a checkpoint every N steps (eval_every)"),
    ("keep_checkpoints", int, "step checkpoints kept, at least --average-last (5)"),
    ("average_last", int, "at the end, average the last K step checkpoints; 0 = off (5)"),
    ("log_every", int, "progress every N steps (50)"),
]
_TASK_OPTIONS = [("symbols", "vocab", "copy/reverse/sort: number of symbols (10)"),
                 ("min_length", "min_len", "copy/reverse/sort: shortest sequence (1)"),
                 ("max_length", "max_len", "copy/reverse/sort: longest sequence (10)"),
                 ("max_digits", "max_digits", "add: digits per operand (4)")]


def _flag(name):
    return "--" + name.replace("_", "-")


def _parser():
    parser = argparse.ArgumentParser(
        prog="tinygrad-tf", description="Train and use sequence-to-sequence Transformers "
        "(\"Attention Is All You Need\") on a CPU.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model (the paper's recipe by default)",
                                argument_default=argparse.SUPPRESS)
    for name, kind, text in _TRAIN_OPTIONS:
        train.add_argument(_flag(name), type=kind, help=text, dest=name)
    for flag, key, text in _TASK_OPTIONS:
        train.add_argument(_flag(flag), type=int, help=text, dest=f"task_{key}")
    train.add_argument("--norm-first", action="store_true", dest="norm_first",
                       help="pre-norm sub-layers instead of the paper's post-norm")
    train.add_argument("--resume", metavar="RUN", help="continue RUN from its newest checkpoint "
                       "(flags given here override its config, e.g. a larger --steps)")

    def run_argument(sub):
        sub.add_argument("run", metavar="RUN", help="a run directory made by `train`")
        sub.add_argument("--checkpoint", default="final",
                         help="final (the run's final model, see RUN/final.json), best, last, "
                         "average, or a checkpoint file (final)")

    def decoding_arguments(sub):
        sub.add_argument("--beam", type=int, default=4, help="beam size; 1 = greedy (4)")
        sub.add_argument("--alpha", type=float, default=0.6, help="beam length penalty (0.6)")
        sub.add_argument("--no-cache", action="store_true",
                         help="re-run the decoder on the whole prefix each step (slower)")

    evaluate = commands.add_parser("evaluate", help="loss, accuracy, exact match and BLEU")
    run_argument(evaluate)
    decoding_arguments(evaluate)
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"],
                          help="the run's split to score (test)")
    evaluate.add_argument("--file", help="score this TSV file instead of a split")
    evaluate.add_argument("--limit", type=int, help="score only the first N pairs")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    translate = commands.add_parser("translate", help="translate text (arguments or stdin)")
    run_argument(translate)
    decoding_arguments(translate)
    translate.add_argument("text", nargs="*", help="sentences; without them, lines of stdin")
    translate.add_argument("--attention", metavar="FILE.png",
                           help="draw each decoder layer's cross-attention (needs matplotlib; "
                           "one file per text, numbered when there are several)")
    translate.add_argument("--heads", action="store_true",
                           help="with --attention: one panel per head, not their average")
    parser.translate = translate  # main() re-parses its arguments in any order

    average = commands.add_parser("average", help="average the last N checkpoints' parameters")
    average.add_argument("run", metavar="RUN")
    average.add_argument("--last", type=int, default=5, help="how many checkpoints (5)")

    doctor = commands.add_parser("doctor", help="versions, kernels, threads, timings, preset sizes")
    doctor.add_argument("--quick", action="store_true",
                        help="skip compiling every Numba kernel for float32 and float64 "
                        "(kernels.warmup: minutes on the first run after installing, before "
                        "Numba's disk cache holds them)")
    return parser


# ---------------------------------------------------------------------------- train

def _train_config(args):
    from .train import TrainConfig, read_config
    given = {key: value for key, value in vars(args).items()
             if key not in ("command", "resume") and not key.startswith("task_")}
    task_options = {key[len("task_"):]: value for key, value in vars(args).items()
                    if key.startswith("task_")}
    if given.get("preset") == "none":
        given["preset"] = None
    resume = getattr(args, "resume", None)
    if resume:
        config, _ = read_config(resume)
        fixed = set(given) - {"steps", "time_budget", "target_exact_match", "eval_every",
                              "eval_decode", "save_every", "keep_checkpoints", "log_every",
                              "average_last"}
        if fixed or task_options:
            named = ", ".join(sorted(fixed | set(task_options)))
            raise ValueError(f"--resume continues a run as configured; only the budget and "
                             f"logging can change, not {named}")
        return dataclasses.replace(config, **given, run_dir=resume)
    if task_options:
        given["task_options"] = task_options
    if "run_dir" not in given:
        name = given.get("task", TrainConfig.task) if "train_file" not in given else "tsv"
        given["run_dir"] = os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(os.path.join(given["run_dir"], "config.json")):
        raise ValueError(f"{given['run_dir']} already holds a run; continue it with --resume "
                         f"{given['run_dir']} or pick another --run-dir")
    return TrainConfig(**given)


def _cmd_train(args):
    from .parallel import launch_train
    from .train import train
    config = launch_train(_train_config, args)  # one process, or one of `mpiexec -n K` ranks
    summary = train(config, resume=bool(getattr(args, "resume", None)))
    if summary["final"] is not None:  # None on ranks other than 0, whose stdout is silenced
        print(f"final model: {summary['checkpoint']} ({summary['final']['reason']})")
    if os.path.exists(summary["plot"]):
        print(f"plot:       {summary['plot']}")
    if summary["status"] == "interrupted":
        print(f"interrupted; continue with: tinygrad-tf train --resume {config.run_dir}")
        return 130
    return 0


# ---------------------------------------------------------------------------- evaluate, translate

def _cmd_evaluate(args):
    from .data import load_tsv
    from .train import describe_decoding, evaluate_pairs, load_run, load_splits
    model, tokenizer, config, info = load_run(args.run, args.checkpoint)
    pairs = load_tsv(args.file) if args.file else load_splits(config)[args.split]
    if not pairs:
        raise ValueError(f"{args.run}: the {args.split} split is empty; pass --file FILE.tsv")
    pairs = pairs[:args.limit] if args.limit else pairs
    started = time.perf_counter()
    result = evaluate_pairs(model, tokenizer, pairs, beam_size=args.beam, alpha=args.alpha,
                            n_samples=0)
    result.pop("samples")
    result.update(checkpoint=info["checkpoint"], step=info.get("step"), beam=args.beam,
                  seconds=round(time.perf_counter() - started, 2), data=args.file or args.split)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['data']}: {result['n_pairs']} pairs, checkpoint {info['checkpoint']} "
          f"(step {result['step']}), {describe_decoding(args.beam, args.alpha)}")
    print(f"  loss           {result['loss']:.4f}")
    print(f"  token accuracy {result['token_accuracy']:.4f}")
    print(f"  exact match    {result['exact_match']:.4f}")
    if result["bleu"] is None:
        print(f"  {result['bleu_signature']}")
    else:
        print(f"  BLEU           {result['bleu']:.2f}   ({result['bleu_signature']})")
    return 0


def _inputs(args):
    """(where, line) of each text to translate: the arguments, else the lines of stdin read as
    bytes, so that one line of bad UTF-8 is that line's problem, not the stream's."""
    if args.text:
        return ((f"argument {n}", text) for n, text in enumerate(args.text, 1))
    stream = getattr(sys.stdin, "buffer", sys.stdin)  # tests pass a StringIO
    return ((f"<stdin>:{n}", line.rstrip(b"\r\n" if isinstance(line, bytes) else "\r\n"))
            for n, line in enumerate(stream, 1))


def _cmd_translate(args):
    from .data import DataError, decode_line
    from .train import decode_texts, load_run
    from .tokenizers import unknown_tokens
    if args.heads and not args.attention:
        raise ValueError("--heads draws attention maps; give --attention FILE.png too")
    if args.attention:
        from .attention_maps import require_matplotlib
        require_matplotlib()  # fail before decoding anything
    model, tokenizer, _, _ = load_run(args.run, args.checkpoint)
    unknown, texts, skipped = {}, [], []

    def skip(problem):
        skipped.append(problem)
        if len(skipped) <= 10:
            print(f"warning: {problem}; its output line is left empty", file=sys.stderr)

    def flush(chunk):
        # A line that cannot be translated gets an empty output line and a warning, so output
        # line N still belongs to input line N; the other lines are translated.
        outputs, wanted = [""] * len(chunk), {}  # wanted: {index in chunk: text}
        for index, (where, line) in enumerate(chunk):
            try:
                text = decode_line(line, where)
            except DataError as error:
                skip(str(error))
                continue
            if text:  # an empty line's translation is an empty line
                wanted[index] = text
        lengths = np.diff(tokenizer.encode_batch(list(wanted.values()))[1]) + 1  # with <eos>
        for (index, text), length in zip(list(wanted.items()), lengths):
            if length > model.config.max_len:
                skip(f"{chunk[index][0]}: {length} tokens (with <eos>), more than the model's "
                     f"max_len of {model.config.max_len}")
                del wanted[index]
        for token, count in unknown_tokens(tokenizer, wanted.values()).items():
            unknown[token] = unknown.get(token, 0) + count
        for index, output in zip(wanted, decode_texts(
                model, tokenizer, list(wanted.values()), beam_size=args.beam, alpha=args.alpha,
                use_cache=not args.no_cache)):
            outputs[index] = output
        for output in outputs:
            print(output, flush=True)
        if args.attention:
            texts.extend(wanted.values())

    chunk, total = [], 0
    for total, item in enumerate(_inputs(args), 1):
        chunk.append(item)
        if len(chunk) == 256:  # stream long inputs instead of reading all of stdin first
            flush(chunk)
            chunk = []
    flush(chunk)
    if unknown:  # once per call, after the outputs, with the count
        shown = ", ".join(repr(token) for token in list(unknown)[:10])
        what = {"char": "character", "word": "word"}.get(tokenizer.kind, "token")
        print(f"warning: {sum(unknown.values())} input {what}(s) outside the vocabulary were "
              f"read as <unk>: {shown}"
              + (", ..." if len(unknown) > 10 else ""), file=sys.stderr)
    if args.attention:
        from .attention_maps import save_attention_maps
        for path in save_attention_maps(model, tokenizer, texts, args.attention,
                                        beam_size=args.beam, alpha=args.alpha, heads=args.heads):
            print(f"attention map: {path}", file=sys.stderr)
    if skipped:  # the rest is translated, but a script must notice
        shown = "the warnings" if len(skipped) <= 10 else "the first 10 warnings"
        print(f"tinygrad-tf translate: error: {len(skipped)} of {total} input line(s) could "
              f"not be translated (see {shown}); their output lines are empty", file=sys.stderr)
        return 1
    return 0


def _cmd_average(args):
    from . import checkpoint
    out = os.path.join(args.run, "checkpoints", "average.safetensors")
    steps = checkpoint.average(os.path.join(args.run, "checkpoints"), args.last, out)
    print(f"averaged {len(steps)} checkpoints (steps {', '.join(map(str, steps))}) into {out}")
    print(f"use it with: tinygrad-tf evaluate {args.run} --checkpoint average")
    return 0


# ---------------------------------------------------------------------------- doctor

def count_parameters(config):
    """Parameters of a Transformer with `config`, from its sizes (tied matrices counted once)."""
    d, d_ff, vocab = config.d_model, config.d_ff, config.tgt_vocab_size
    attention = 4 * (d * d + d)
    feed_forward = 2 * d * d_ff + d_ff + d
    norm = 2 * d
    encoder = config.n_encoder_layers * (attention + feed_forward + 2 * norm)
    decoder = config.n_decoder_layers * (2 * attention + feed_forward + 3 * norm)
    final_norms = 2 * norm if config.norm_first else 0
    embeddings = vocab * d + (0 if config.share_embeddings else config.src_vocab_size * d)
    return embeddings + encoder + decoder + final_norms


def _version(module):
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"
    except AttributeError:
        return "installed"


def _cmd_doctor(args):
    import numba

    import tinygrad_tf
    from tinygrad_tf import kernels
    from .transformer import TransformerConfig
    print("versions")
    print(f"  python {platform.python_version()} on {platform.machine()} {platform.system()}")
    for name in ("tinygrad_tf", "numpy", "numba", "safetensors"):
        print(f"  {name:12s} {_version(name)}")
    for name in ("tqdm", "sacrebleu", "matplotlib", "tokenizers"):
        print(f"  {name:12s} {_version(name)}   (optional, the 'recipe' extra)")
    print(f"  {'torch':12s} {_version('torch')}   (optional, only for reference comparisons)")
    print("kernels")
    print(f"  active {kernels.active()}; available {', '.join(kernels.available())}")
    if hasattr(kernels, "info"):
        for key, value in kernels.info().items():
            if key not in ("active", "available", "compiled"):
                print(f"  {key}: {value}")
    print("threads")
    print(f"  cpus {os.cpu_count()}; numba threads {numba.get_num_threads()}")
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                 "TINYGRAD_TF_KERNELS"):
        print(f"  {name}={os.environ.get(name, '(unset)')}")
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    print(f"  numpy BLAS: {blas.get('name', '?')} {blas.get('version', '')}")
    print("timings")
    if args.quick:
        print("  kernels.warmup(): skipped (--quick); the first step below compiles (or loads from "
              "Numba's cache) the kernels it uses")
    elif hasattr(kernels, "warmup"):
        report = kernels.warmup()
        total = report.pop("total_seconds", None)
        sources = {}
        for entry in report.values():
            if isinstance(entry, dict):
                sources[entry.get("source", "?")] = sources.get(entry.get("source", "?"), 0) + 1
        counts = ", ".join(f"{n} {source}" for source, n in sorted(sources.items()))
        print(f"  kernels.warmup(): {total:.2f} s for {len(report)} kernels ({counts})")
    for label, seconds in _step_timings(tinygrad_tf, TransformerConfig):
        print(f"  {label}: {seconds * 1e3:.1f} ms")
    print("presets (parameters; shared vocabulary of 37000 for base/big, as the paper's BPE)")
    paper = {"base": "65M", "big": "213M", "tiny": "-"}
    for name, vocab in (("tiny", 64), ("base", 37000), ("big", 37000)):
        config = getattr(TransformerConfig, name)(vocab)
        print(f"  {name:5s} d_model {config.d_model:4d}, {config.n_heads:2d} heads, "
              f"{config.n_encoder_layers}+{config.n_decoder_layers} layers, d_ff {config.d_ff:4d}: "
              f"{count_parameters(config):>11,d}   paper: {paper[name]}")
    return 0


def _step_timings(tinygrad_tf, TransformerConfig):
    """The first (compiling) and a later training step of the tiny model, batch 32 x 16."""
    from tinygrad_tf import Tensor, nn
    from tinygrad_tf.nn import functional as F
    from .transformer import Transformer
    tinygrad_tf.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(64))
    optimizer = nn.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    rng = np.random.default_rng(0)
    src, tgt = (Tensor(rng.integers(4, 64, (32, 16))) for _ in range(2))
    times = []
    for _ in range(3):
        started = time.perf_counter()
        logits = model(src, tgt)
        loss = F.cross_entropy(logits.reshape(-1, 64), tgt.reshape(-1), label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return [("first tiny training step (32 x 16 tokens)", times[0]),
            ("later tiny training step", min(times[1:]))]


# ---------------------------------------------------------------------------- main

def _rank():
    from tinygrad_tf import distributed
    return distributed.rank_prefix()


_COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "translate": _cmd_translate,
             "average": _cmd_average, "doctor": _cmd_doctor}


def command():
    """The `tinygrad-tf` program (and `python -m tinygrad_tf`): tune this process for training
    (kernels.tune_process: OpenMP wait policy, allocator, adaptive threads), then run main()."""
    from tinygrad_tf import kernels
    kernels.tune_process()
    sys.exit(main())


def main(argv=None):
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status. Changes no
    process-wide setting: `command()` opts in to those."""
    from tinygrad_tf import distributed
    status = _main(argv)
    if status and distributed.is_distributed():
        distributed.abort(status)  # a rank that returned would leave the others in a collective
    return status


def _main(argv):
    from .checkpoint import CheckpointError
    from .data import DataError
    from .train import TrainingDiverged
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["translate"]:  # options and texts in any order: `translate RUN --beam 1 x`
        args = parser.translate.parse_intermixed_args(argv[1:])
        args.command = "translate"
    else:
        args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except TrainingDiverged as error:
        print(f"tinygrad-tf {args.command}: {_rank()}training stopped: {error}", file=sys.stderr)
        return 1
    except (ValueError, DataError, CheckpointError, FileNotFoundError, ImportError) as error:
        print(f"tinygrad-tf {args.command}: {_rank()}error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tinygrad-tf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    command()
