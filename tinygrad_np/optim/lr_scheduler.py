"""Learning-rate schedules, stepped once per epoch (or per iteration, for full-batch training), per group.

They follow PyTorch's arithmetic step for step, including its recursive forms: each `step()` derives the new
"lr" of every parameter group from the group's current one, so the sequences equal torch.optim.lr_scheduler's
to the last bit, and an lr changed by hand between steps is carried along, as in PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

from tinygrad_np.optim.optimizer import Optimizer, check_non_negative


class LRScheduler:
    """Sets each parameter group's "lr" from the number of `step()` calls so far, `last_epoch`.

    `last_epoch=-1` (the default) starts a schedule: each group's lr is kept as its "initial_lr", the base of
    the schedule. A larger `last_epoch` resumes one: the groups must hold "initial_lr" already (an optimizer
    that had a scheduler, or whose state_dict was loaded), and the constructor's step moves to last_epoch + 1.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a scheduler needs an Optimizer, got {type(optimizer).__name__}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"last_epoch must be an integer >= -1, got {last_epoch!r}")
        self.optimizer = optimizer
        for index, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise ValueError(
                    f"parameter group {index} has no 'initial_lr', which resuming with last_epoch={last_epoch} "
                    "needs: load the optimizer's state_dict (from a run that had a scheduler) first"
                )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial = True  # the constructor's step: schedules that only rescale the current lr keep it
        self.step()
        self._initial = False

    def get_lr(self) -> list[float]:
        """The lr of each group at `last_epoch`, given the groups' current ones."""
        raise NotImplementedError

    def step(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.base_lrs):
            raise ValueError(
                f"the optimizer has {len(groups)} parameter groups, but this scheduler was made for "
                f"{len(self.base_lrs)}; make the scheduler after add_param_group"
            )
        self.last_epoch += 1
        for group, lr in zip(groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in groups]

    def get_last_lr(self) -> list[float]:
        """The lr of each group as the last `step()` set it."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """base_lrs, last_epoch and the last lrs. The settings (step_size, T_max, ...) are the constructor's
        arguments, not state (PyTorch stores them too); the groups' current lrs are in the optimizer's state."""
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch, "_last_lr": list(self._last_lr)}

    @staticmethod
    def check_state_dict(state_dict: dict[str, Any]) -> None:
        """Raise ValueError unless `state_dict` could come from `state_dict()`: finite lrs >= 0, last_epoch >= 0."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"base_lrs", "last_epoch", "_last_lr"}:
            raise ValueError("scheduler state must hold base_lrs, last_epoch and _last_lr, as state_dict() writes")
        base_lrs, last_lrs, last_epoch = state_dict["base_lrs"], state_dict["_last_lr"], state_dict["last_epoch"]
        if not isinstance(base_lrs, list) or not isinstance(last_lrs, list) or len(base_lrs) != len(last_lrs):
            raise ValueError("scheduler state must hold base_lrs and _last_lr as lists of one lr per group")
        for name, lrs in (("base_lrs", base_lrs), ("_last_lr", last_lrs)):
            for index, lr in enumerate(lrs):
                check_non_negative(f"scheduler state {name}[{index}]", lr)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < 0:
            raise ValueError(f"scheduler state has last_epoch {last_epoch!r}; it must be an integer >= 0")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule's position. As in PyTorch, the groups' lrs come from the optimizer's own
        state_dict (load both); this changes no lr."""
        self.check_state_dict(state_dict)
        groups = len(self.optimizer.param_groups)
        if len(state_dict["base_lrs"]) != groups:
            raise ValueError(f"scheduler state has {len(state_dict['base_lrs'])} groups, the optimizer has {groups}")
        self.base_lrs = [float(lr) for lr in state_dict["base_lrs"]]
        self._last_lr = [float(lr) for lr in state_dict["_last_lr"]]
        self.last_epoch = state_dict["last_epoch"]


class StepLR(LRScheduler):
    """lr = lr * gamma whenever epoch is a multiple of step_size, i.e. base_lr * gamma ^ floor(epoch / step_size)
    (the tutorial's step decay)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size!r}")
        if not (isinstance(gamma, (int, float)) and 0 < gamma <= 1):
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        # No check of the constructor's step: PyTorch's StepLR decays there too when last_epoch + 1 is a multiple.
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2, computed recursively as PyTorch does.

    Past T_max it does not stop: the cosine climbs back to base_lr at 2 T_max, and so on (period 2 T_max), as
    in PyTorch. Each step rescales the current lr by the ratio of consecutive cosine terms; at the bottom
    (epoch = T_max + 1 modulo 2 T_max), where that ratio divides by zero, it adds the increment instead.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"T_max must be an integer >= 1, got {T_max!r}")
        self.T_max, self.eta_min = T_max, check_non_negative("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        groups, epoch, T_max, eta_min = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return [group["lr"] for group in groups]
        if (epoch - 1 - T_max) % (2 * T_max) == 0:
            return [
                group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
                for base_lr, group in zip(self.base_lrs, groups, strict=True)
            ]
        return [
            (1 + math.cos(math.pi * epoch / T_max)) / (1 + math.cos(math.pi * (epoch - 1) / T_max))
            * (group["lr"] - eta_min)
            + eta_min
            for group in groups
        ]
