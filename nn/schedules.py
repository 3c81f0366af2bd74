"""Learning-rate schedules: call `scheduler.step()` after each `optimizer.step()`.

`LambdaLR` is torch's: lr = base_lr * lr_lambda(n) for the n-th scheduler step (n = 0 at
construction). `TransformerLR` is the warm-up schedule of "Attention Is All You Need" (section
5.3): the learning rate rises linearly for `warmup_steps` steps, then decays as 1/sqrt(step).
"""


class LRScheduler:
    """Base class: sets each parameter group's lr from `get_lr()`; state_dict for resuming."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self.step()

    def get_lr(self):
        raise NotImplementedError(f"{type(self).__name__} has no get_lr method")

    def step(self):
        """Advance one step and set the optimizer's learning rates for the next update."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates set by the latest step(), one per parameter group."""
        return list(self._last_lr)

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state_dict):
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict["base_lrs"])
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step) (one function, or one per parameter group)."""

    def __init__(self, optimizer, lr_lambda):
        groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != groups:
                raise ValueError(f"LambdaLR: {len(lr_lambda)} lr_lambdas for {groups} groups")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * groups
        super().__init__(optimizer)

    def get_lr(self):
        return [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]


def transformer_lr(step, d_model, warmup_steps=4000, factor=1.0):
    """factor * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), for step >= 1."""
    if step < 1:
        raise ValueError(f"transformer_lr: step counts from 1, got {step}")
    return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


class TransformerLR(LRScheduler):
    """The paper's schedule (section 5.3), eq. (3), times `factor`. It sets the learning rate
    itself: the optimizer's own lr is ignored (the paper uses Adam with betas (0.9, 0.98) and
    eps 1e-9). The k-th optimizer.step() uses transformer_lr(k)."""

    def __init__(self, optimizer, d_model, warmup_steps=4000, factor=1.0):
        if d_model <= 0 or warmup_steps <= 0:
            raise ValueError(f"TransformerLR: d_model and warmup_steps must be positive, got "
                             f"{d_model} and {warmup_steps}")
        self.d_model, self.warmup_steps, self.factor = d_model, warmup_steps, factor
        super().__init__(optimizer)

    def get_lr(self):
        # last_epoch counts scheduler steps from 0; the update about to happen is number + 1.
        lr = transformer_lr(self.last_epoch + 1, self.d_model, self.warmup_steps, self.factor)
        return [lr] * len(self.optimizer.param_groups)
