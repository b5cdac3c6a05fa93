"""RNGStateHook: a resumed run continues the random stream of the interrupted one."""

import random

import numpy as np
import torch
from toy_runner import toy_runner

from btdnet.engine import RNGStateHook


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_checkpoint_carries_rng_state_and_resume_restores_it(tmp_path):
    hooks = [dict(type=RNGStateHook)]
    toy_runner(tmp_path, max_iters=4, custom_hooks=hooks).train()
    state = torch.load(str(tmp_path / 'iter_4.pth'))['rng_state']
    assert set(state) >= {'python', 'numpy', 'torch'}

    # What the stream gives right after the checkpoint was written ...
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    expected = _draws()
    # ... is what a resumed runner's stream gives after loading it, whatever happened before.
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    resumed = toy_runner(tmp_path, max_iters=4, custom_hooks=hooks, resume=True)
    resumed.load_or_resume()
    resumed.call_hook('before_train')
    assert _draws() == expected


def test_checkpoint_without_rng_state_leaves_rng_alone(tmp_path):
    torch.manual_seed(5)
    before = torch.get_rng_state()
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner=None, checkpoint={'meta': {}})
    hook.before_train(runner=None)
    assert torch.equal(torch.get_rng_state(), before)
