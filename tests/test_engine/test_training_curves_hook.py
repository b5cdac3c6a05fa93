"""TrainingCurvesHook draws a PNG and keeps its validation history across --resume."""

import matplotlib.image as mpimg
import pytest
import torch
from toy_runner import ToyDataset, toy_runner

from btdnet.engine import TrainingCurvesHook


def test_curves_png_written_and_history_survives_resume(tmp_path):
    hook = [dict(type=TrainingCurvesHook)]
    runner = toy_runner(tmp_path, max_iters=4, val_interval=2, custom_hooks=hook)
    runner.train()
    png = tmp_path / 'training_curves.png'
    image = mpimg.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 300
    history = runner.message_hub.get_info('training_curves/val')
    assert [step for step, _ in history] == [2, 4]
    # Each point is the metric of the weights validated at that step (saved as iter_<step>.pth
    # just before), recomputed here: 1 / (1 + mean squared error) over the 8 samples.
    samples = [ToyDataset()[i] for i in range(8)]
    inputs = torch.stack([s['inputs'] for s in samples])
    targets = torch.stack([s['targets'] for s in samples])
    for step, value in history:
        weights = torch.load(tmp_path / f'iter_{step}.pth')['state_dict']
        pred = inputs @ weights['linear.weight'][0] + weights['linear.bias'][0]
        assert value == pytest.approx(1.0 / (1.0 + ((pred - targets) ** 2).mean().item()), rel=1e-6)

    png.unlink()
    resumed = toy_runner(tmp_path, max_iters=6, val_interval=2, custom_hooks=hook, resume=True)
    resumed.train()
    # iter_4.pth is written before iteration 4's validation runs (mmengine's order), so the
    # resumed history holds iteration 2's point, then the new one at 6.
    assert [step for step, _ in resumed.message_hub.get_info('training_curves/val')] == [2, 6]
    assert png.is_file()
