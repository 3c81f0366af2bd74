"""`make demo`: train the tiny Transformer to reverse strings, then use it.

Trains the tiny preset with the paper's recipe (Adam 0.9/0.98/1e-9, warm-up schedule, label
smoothing 0.1, dropout 0.1) on the built-in `reverse` task until validation exact match reaches
99.5%. Training ends as the paper's recipe does: the last 5 step checkpoints are averaged and the
better of the average and the best checkpoint (on validation) becomes the final model, whose
held-out test score (>= 99% exact match) is reported with greedy and beam-4 decoding and their
times. Then it translates a few strings, draws the cross-attention of one reversal (the
anti-diagonal) and says where the plot, map and checkpoints are. The same as, on the command line:

    tinygrad-tf train --task reverse --run-dir runs/demo --max-tokens 2048 --warmup-steps 400 \
        --steps 6000 --eval-every 250 --target-exact-match 0.995
    tinygrad-tf evaluate runs/demo --split test
    tinygrad-tf translate runs/demo abcdefghij faced
    tinygrad-tf translate runs/demo abcdefghij --attention runs/demo/attention.png
"""
import importlib.util
import os
import sys
import time

from tinygrad_tf import kernels
from tinygrad_tf.models.attention_maps import save_attention_maps
from tinygrad_tf.models.train import TrainConfig, decode_texts, format_decoding_score, load_run
from tinygrad_tf.models.train import train

kernels.tune_process()  # a program of its own, tuned as `tinygrad-tf train` is (docs/kernels.md)
started = time.perf_counter()
run_dir = os.path.join("runs", time.strftime("demo-%Y%m%d-%H%M%S"))
config = TrainConfig(run_dir=run_dir, task="reverse", seed=0, n_train=20000, n_valid=500,
                     n_test=500, preset="tiny", max_tokens=2048, warmup_steps=400, steps=6000,
                     eval_every=250, target_exact_match=0.995, log_every=100)
print(f"training the tiny preset on 'reverse' (strings of 1-10 symbols from 10) into {run_dir}")
print("validation every 250 steps; stops at 99.5% exact match on the validation split\n")
summary = train(config)
trained = time.perf_counter()

final, test = summary["final"], summary["test"]
model, tokenizer, _, info = load_run(run_dir)  # the final model
print(f"\nfinal model: {final['checkpoint']} (step {info['step']}): {final['reason']}")
for name, score in final["scores"].items():
    print(f"  validation, {name:7s}: exact match {score['exact_match']:.2%}, loss "
          f"{score['loss']:.4f}" + (f" (steps {score['steps']})" if "steps" in score else ""))
print(f"held-out test split ({test['n_pairs']} strings never seen in training), final model:")
print(f"  greedy:        {format_decoding_score(test['greedy'])}")
print(f"  beam 4, a 0.6: {format_decoding_score(test['beam'])}")

examples = ["abcdefghij", "faced", "badge", "jihgfedcba", "aabbccddee"]
print("\ntranslations (greedy, then beam 4, with the key/value cache):")
greedy = decode_texts(model, tokenizer, examples)
beam = decode_texts(model, tokenizer, examples, beam_size=4)
for source, out_greedy, out_beam in zip(examples, greedy, beam):
    mark = "ok" if out_greedy == out_beam == source[::-1] else "WRONG"
    print(f"  {source:12s} -> {out_greedy:12s} {out_beam:12s} {mark}")

attention_map = None
if importlib.util.find_spec("matplotlib") is not None:
    attention_map = save_attention_maps(model, tokenizer, ["abcdefghij"],
                                        os.path.join(run_dir, "attention.png"))[0]

finished = time.perf_counter()
print(f"\nrun directory {run_dir}/")
print(f"  plot        {summary['plot']}")
print(f"  final model {summary['checkpoint']}   (RUN/final.json says why)")
print(f"  attention   {attention_map or '(skipped: install matplotlib)'}   "
      "(abcdefghij -> jihgfedcba: look for the anti-diagonal)")
print(f"  samples     {os.path.join(run_dir, 'samples.txt')}")
print(f"  metrics     {os.path.join(run_dir, 'metrics.jsonl')}")
print(f"time: {summary['step']} steps in {summary['elapsed']:.0f} s of training, "
      f"{trained - started:.0f} s with validation; {finished - started:.0f} s in all")
print(f"try: tinygrad-tf translate {run_dir} yourstring")
if min(test["greedy"]["exact_match"], test["beam"]["exact_match"]) < 0.99:
    sys.exit("demo: the model did not reach 99% exact match on the test split")
