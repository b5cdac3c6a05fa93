"""Random-number-generator state in checkpoints, so a resumed run continues the same stream."""

import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the Python, numpy, torch (and CUDA) RNG states with every checkpoint; restore on resume.

    mmengine re-seeds a resumed run with the original seed, so dropout masks and any other
    randomness after ``--resume`` would replay the stream from iteration 0 instead of continuing
    it. With this hook a single-process run killed at any checkpoint and resumed ends bitwise
    where the uninterrupted run ends. Distributed runs restore rank 0's state on every rank.

    The states are plain tensors, tuples and a uint32 array: nothing outside the checkpoint
    allow-list of :mod:`btdnet.utils.safe_checkpoint`.
    """

    priority = 'VERY_LOW'
    _KEY = 'rng_state'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
        )
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state()
        checkpoint[self._KEY] = state

    def __init__(self):
        self._resumed_state = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Applied in before_train: between loading and training the Runner builds the train
        # loop, whose dataloader iterator draws from torch's RNG.
        self._resumed_state = checkpoint.get(self._KEY)

    def before_train(self, runner) -> None:
        state, self._resumed_state = self._resumed_state, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'].cpu())
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'].cpu())
