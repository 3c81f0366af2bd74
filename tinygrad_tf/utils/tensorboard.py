"""torch.utils.tensorboard.SummaryWriter without TensorBoard: scalars and text are appended as
JSON lines to `log_dir/scalars.jsonl` (one {"tag", "value", "step", "time"} per line), so a
training script's logging runs and its numbers are kept; images, histograms and graphs are
accepted and dropped (no event-file writer here)."""
import json
import os
import time


class SummaryWriter:
    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix=""):
        self.log_dir = log_dir or os.path.join("runs", time.strftime("%b%d_%H-%M-%S") + comment)
        os.makedirs(self.log_dir, exist_ok=True)
        self._file = open(os.path.join(self.log_dir, "scalars.jsonl"), "a", encoding="utf-8")

    def _write(self, tag, value, step, walltime):
        record = {"tag": tag, "value": value, "step": step,
                  "time": time.time() if walltime is None else walltime}
        self._file.write(json.dumps(record) + "\n")

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, **kwargs):
        self._write(tag, float(scalar_value), global_step, walltime)

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        for tag, value in tag_scalar_dict.items():
            self._write(f"{main_tag}/{tag}", float(value), global_step, walltime)

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        self._write(tag, str(text_string), global_step, walltime)

    def _dropped(self, *args, **kwargs):
        pass

    add_histogram = add_image = add_images = add_figure = add_graph = add_embedding = _dropped
    add_hparams = add_audio = add_pr_curve = add_mesh = _dropped

    def flush(self):
        self._file.flush()

    def close(self):
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
