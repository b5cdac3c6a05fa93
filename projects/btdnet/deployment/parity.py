"""Compare inference backends on a dataset split: masks against each other and against the truth.

Used by ``tools/deployment/verify_onnx.py``: the PyTorch model and its ONNX Runtime exports
(fp32, int8) predict every sample of a split from the same pre-processed batches; for each
backend it reports the test scores (oIoU, mIoU, as ``RRSISMetric`` defines them) and how far its
masks and logits are from the reference backend's (the first one given).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.utils import ProgressBar

from ..evaluation.rrsis_metric import sample_ious

__all__ = ['compare_backends']


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two 0/1 masks; 1 when both are empty (they agree)."""
    a, b = a.bool(), b.bool()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def compare_backends(
    models: dict, dataset: Sequence, batch_size: int = 8, progress: bool = True
) -> dict[str, dict]:
    """Predict every sample of ``dataset`` with each model and compare.

    Args:
        models (dict[str, nn.Module]): Name -> model with ``test_step`` (a BTDNet from
            ``init_model`` or an ``ONNXRuntimeSegmentor``); the first is the reference.
        dataset (Sequence): A dataset whose items are the test pipeline's packed dicts, with
            ``gt_sem_seg`` at the original size.
        batch_size (int): Samples per forward.
        progress (bool): Show a progress bar.

    Returns:
        dict[str, dict]: Per backend ``oIoU`` and ``mIoU`` (percent) against the ground truth,
        ``mask_iou_mean`` / ``mask_iou_min`` (IoU of its masks with the reference's, per
        sample), ``max_abs_logit_diff`` (at the original sizes) and ``samples``.
    """
    names = list(models)
    stats = {n: dict(inter=[], union=[], mask_iou=[], logit_diff=0.0) for n in names}
    bar = ProgressBar(len(dataset)) if progress else None
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            outputs = {n: models[n].test_step(pseudo_collate(items)) for n in names}
            for k, item in enumerate(items):
                gt = item['data_samples'].gt_sem_seg.data.reshape(-1).bool()
                ref = outputs[names[0]][k]
                for n in names:
                    out = outputs[n][k]
                    pred = out.pred_sem_seg.data.reshape(-1).cpu().bool()
                    stats[n]['inter'].append(int((pred & gt).sum()))
                    stats[n]['union'].append(int((pred | gt).sum()))
                    stats[n]['mask_iou'].append(
                        _mask_iou(pred, ref.pred_sem_seg.data.reshape(-1).cpu())
                    )
                    diff = (out.seg_logits.data.cpu() - ref.seg_logits.data.cpu()).abs().max()
                    stats[n]['logit_diff'] = max(stats[n]['logit_diff'], float(diff))
                if bar is not None:
                    bar.update()
    report = {}
    for n in names:
        inter = np.array(stats[n]['inter'], dtype=np.int64)
        union = np.array(stats[n]['union'], dtype=np.int64)
        report[n] = dict(
            samples=len(inter),
            oIoU=100.0 * inter.sum() / union.sum() if union.sum() else 0.0,
            mIoU=100.0 * float(np.mean(sample_ious(inter, union))),
            mask_iou_mean=float(np.mean(stats[n]['mask_iou'])),
            mask_iou_min=float(np.min(stats[n]['mask_iou'])),
            max_abs_logit_diff=stats[n]['logit_diff'],
        )
    return report
