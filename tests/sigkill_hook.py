"""A hook that SIGKILLs its own training process right after one iteration's checkpoint.

The kill-and-resume test (tests/test_tools/test_train_launch.py) kills on this deterministic
event instead of polling for a file: the hook runs after mmengine's ``CheckpointHook`` in the
same ``after_train_iter``, so the checkpoint and ``last_checkpoint`` are complete and nothing of
the next iteration has run, however loaded the machine is. The training subprocess imports this
module through its config's ``custom_imports`` (tests/ on its ``PYTHONPATH``).
"""

import os
import signal

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class SigkillAfterCheckpointHook(Hook):
    """SIGKILL the process (nothing flushed, no clean-up) after iteration ``iteration``'s hooks.

    Args:
        iteration (int): 1-based iteration after whose checkpoint the process dies.
    """

    priority = 'LOWEST'  # after CheckpointHook ('VERY_LOW') within after_train_iter

    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:  # runner.iter counts from 0 until the hooks ran
            os.kill(os.getpid(), signal.SIGKILL)
