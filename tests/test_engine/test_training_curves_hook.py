"""TrainingCurvesHook draws a PNG and keeps its validation history across --resume."""

import matplotlib.image as mpimg
from toy_runner import toy_runner

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
    assert all(0.0 < value <= 1.0 for _, value in history)

    png.unlink()
    resumed = toy_runner(tmp_path, max_iters=6, val_interval=2, custom_hooks=hook, resume=True)
    resumed.train()
    # iter_4.pth is written before iteration 4's validation runs (mmengine's order), so the
    # resumed history holds iteration 2's point, then the new one at 6.
    assert [step for step, _ in resumed.message_hub.get_info('training_curves/val')] == [2, 6]
    assert png.is_file()
