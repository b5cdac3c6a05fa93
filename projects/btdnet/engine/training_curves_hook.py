"""A PNG of the training curves (loss and a validation metric against iteration)."""

import os.path as osp

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS


@HOOKS.register_module()
class TrainingCurvesHook(Hook):
    """Draw ``training_curves.png`` in the work dir after each validation and at the end.

    The loss curve is the message hub's ``train/<loss_key>`` history (one value per iteration,
    kept across ``--resume``); the validation curve is recorded here as (iteration, value) pairs
    in the message hub's runtime info, which checkpoints also keep. The same scalars reach
    TensorBoard through mmengine's visualizer when ``TensorboardVisBackend`` is enabled.

    Args:
        metric (str): Validation metric to plot. Defaults to ``'oIoU'``.
        loss_key (str): Training log key to plot. Defaults to ``'loss'``.
        out_file (str): File name inside the work dir. Defaults to ``'training_curves.png'``.
    """

    priority = 'LOW'
    _INFO_KEY = 'training_curves/val'

    def __init__(
        self, metric: str = 'oIoU', loss_key: str = 'loss', out_file: str = 'training_curves.png'
    ):
        self.metric = metric
        self.loss_key = loss_key
        self.out_file = out_file

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if not metrics or self.metric not in metrics or runner.train_loop is None:
            return
        history = list(runner.message_hub.get_info(self._INFO_KEY, []))
        history.append((int(runner.iter), float(metrics[self.metric])))
        runner.message_hub.update_info(self._INFO_KEY, history, resumed=True)
        self._draw(runner)

    def after_train(self, runner) -> None:
        self._draw(runner)

    def _draw(self, runner) -> None:
        if runner.rank != 0:
            return
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        scalars = runner.message_hub.log_scalars
        loss_buffer = scalars.get(f'train/{self.loss_key}')
        losses = np.asarray(loss_buffer.data[0], dtype=float) if loss_buffer else np.zeros(0)
        val = runner.message_hub.get_info(self._INFO_KEY, [])
        fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
        if len(losses):
            iters = np.arange(1, len(losses) + 1)
            ax_loss.plot(iters, losses, color='0.75', linewidth=0.8, label='per iteration')
            window = max(1, len(losses) // 25)
            smooth = np.convolve(losses, np.ones(window) / window, mode='valid')
            ax_loss.plot(iters[window - 1 :], smooth, color='C0', label=f'mean of {window}')
            ax_loss.legend()
        ax_loss.set(title=f'training {self.loss_key}', xlabel='iteration')
        if val:
            steps, values = zip(*val)
            ax_val.plot(steps, values, marker='o', color='C1')
        ax_val.set(title=f'validation {self.metric}', xlabel='iteration')
        ax_val.grid(alpha=0.3)
        fig.tight_layout()
        path = osp.join(runner.work_dir, self.out_file)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print_log(f'training curves written to {path}', logger='current')
