"""Sentence-swap controls: does a referring model read the sentence, or only the image?

For a target A of an image (mask M_A) and another target B of the same image, the model is run
on the image with **B's sentence** and its prediction is scored against **M_A**. A model that
reads the sentence marks B and not A, so this *swap* scores near 0; a model that ignores the
words which tell A and B apart marks A (and B) whichever sentence it gets, and scores well.

Over all ordered pairs (A, B) of distinct targets of every image, the swaps are scored as the
test split is (:func:`~btdnet.evaluation.rrsis_metric.referring_scores`: oIoU = sum I / sum U,
mIoU, Pr@X, in percent), together and in subsets of pairs that agree on given attributes:

* ``all``: every swap;
* ``same_colour``: A and B share their colour, so the category or position words must decide;
* ``same_colour_category``: A and B share colour and category, so only position words decide.

``own`` scores each target with its own sentence (the test score, for reference). The
prediction for B's sentence does not depend on A, so each image runs once with all its
sentences (:func:`~btdnet.apis.inference_model`) and every prediction is scored against every
other target's mask.

.. code:: python

    targets = swap_targets(dataset, attributes)       # from a dataset and its objects' attributes
    controls = sentence_swap_controls(model, targets)
    controls['same_colour_category']['oIoU']          # near 0 for a model reading position words
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
import torch
from mmengine.logging import print_log

from ..evaluation.rrsis_metric import referring_scores
from .inference import inference_model

# Subset name -> the attributes two targets must share for their swap to count in it.
SWAP_SUBSETS = OrderedDict(
    all=(),
    same_colour=('colour',),
    same_colour_category=('colour', 'category'),
)


def _as_mask(mask, what: str) -> np.ndarray:
    mask = mask.cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    mask = mask.reshape(mask.shape[-2:]) if mask.ndim == 3 and mask.shape[0] == 1 else mask
    if mask.ndim != 2:
        raise ValueError(
            f'{what}: expected a mask of shape (H, W) or (1, H, W), found {mask.shape}'
        )
    return mask != 0


def _by_image(targets: Sequence[dict]) -> OrderedDict:
    """Image key -> indices of its targets, in order of first appearance."""
    groups = OrderedDict()
    for k, target in enumerate(targets):
        groups.setdefault(target['image'], []).append(k)
    return groups


def swap_records(targets: Sequence[dict], predictions: Sequence) -> list[dict]:
    """I and U of every target with its own sentence and with every other target's sentence.

    Args:
        targets (Sequence[dict]): One per sentence: ``image`` (any key identifying the image;
            targets of one image are paired), ``gt`` (the target mask, (H, W) or (1, H, W), 0 /
            nonzero), optional ``object_id`` (sentences with the same ``object_id`` describe the
            same object and are not paired; default: each target its own object) and the
            attributes the subsets compare (``colour``, ``category``).
        predictions (Sequence): The predicted mask for each target's sentence, in the same order,
            each (H, W) or (1, H, W) at the size of the targets' masks.

    Returns:
        list[dict]: One record per (target, sentence) pair: ``target`` and ``sentence`` (indices
        into ``targets``), ``I``, ``U`` and ``shared`` (the names of the attributes both
        targets have and agree on). ``target == sentence`` is the own-sentence record.
    """
    if len(targets) != len(predictions):
        raise ValueError(
            f'swap_records: expected one prediction per target, found {len(predictions)} for '
            f'{len(targets)} targets'
        )
    by_image = _by_image(targets)
    attributes = sorted({name for names in SWAP_SUBSETS.values() for name in names})
    records = []
    for image, members in by_image.items():
        gts = {k: _as_mask(targets[k]['gt'], f'target {k} ({image})') for k in members}
        preds = {k: _as_mask(predictions[k], f'prediction {k} ({image})') for k in members}
        for a in members:
            for b in members:
                if a != b and targets[a].get('object_id', a) == targets[b].get('object_id', b):
                    continue  # two sentences of one object: not a swap
                if preds[b].shape != gts[a].shape:
                    raise ValueError(
                        f'swap_records: image {image}: the prediction for target {b} has shape '
                        f'{preds[b].shape}, the mask of target {a} {gts[a].shape}'
                    )
                shared = tuple(
                    name
                    for name in attributes
                    if targets[a].get(name) is not None
                    and targets[a].get(name) == targets[b].get(name)
                )
                records.append(
                    dict(
                        target=a,
                        sentence=b,
                        I=int((preds[b] & gts[a]).sum()),
                        U=int((preds[b] | gts[a]).sum()),
                        shared=shared,
                    )
                )
    return records


def swap_scores(records: Sequence[dict], iou_thrs: Sequence[float] = (0.5,)) -> OrderedDict:
    """Score the records of :func:`swap_records`: ``own`` and each of :data:`SWAP_SUBSETS`.

    Args:
        records (Sequence[dict]): From :func:`swap_records`.
        iou_thrs (Sequence[float]): Thresholds of ``Pr@X``. Default (0.5,).

    Returns:
        OrderedDict: ``own``, ``all``, ``same_colour``, ``same_colour_category``, each a dict
        with ``pairs`` (how many records) and, when there are any, ``oIoU``, ``mIoU`` and
        ``Pr@X`` (percent) as the test split is scored.
    """
    groups = OrderedDict(own=[r for r in records if r['target'] == r['sentence']])
    swaps = [r for r in records if r['target'] != r['sentence']]
    for name, needed in SWAP_SUBSETS.items():
        groups[name] = [r for r in swaps if set(needed) <= set(r['shared'])]
    scores = OrderedDict()
    for name, group in groups.items():
        scores[name] = dict(pairs=len(group))
        if group:
            scores[name].update(
                referring_scores([r['I'] for r in group], [r['U'] for r in group], iou_thrs)
            )
    return scores


def swap_targets(dataset, attributes: dict | None = None, load_mask: Callable | None = None):
    """The targets of a referring dataset, for :func:`sentence_swap_controls`.

    Only sentences that name exactly one object are targets: in a generalized dataset
    (``num_targets`` in the data info) the sentences with no target or several are left out,
    since a swap asks whether the model marks the other sentence's one object instead.

    Args:
        dataset: A referring dataset (``get_data_info`` gives ``img_path``, ``text``,
            ``sample_id`` and the mask source; ``ref_id`` where several sentences share an
            object; ``num_targets`` in a generalized dataset).
        attributes (dict, optional): ``sample_id`` -> dict of the target's attributes
            (``colour``, ``category``), e.g. from the synthetic generator's
            ``synthetic_objects.json``. Without it the ``category`` of the data info is used and
            ``same_colour*`` subsets stay empty.
        load_mask (Callable, optional): data info -> (H, W) mask at the image's original size.
            Default: the image and mask loaders of btdnet.

    Returns:
        list[dict]: ``image``, ``text``, ``sample_id``, ``object_id``, ``gt`` and the attributes.
    """
    if load_mask is None:
        from ..datasets.transforms import LoadReferringMask, LoadRSImageFromFile

        load_image, load_gt = LoadRSImageFromFile(), LoadReferringMask()

        def load_mask(info):
            return load_gt(load_image(dict(info)))['gt_seg_map']

    attributes = attributes or {}
    targets = []
    for k in range(len(dataset)):
        info = dataset.get_data_info(k)
        if info.get('num_targets', 1) != 1:
            continue
        sample_id = str(info['sample_id'])
        extra = attributes.get(sample_id, {})
        targets.append(
            dict(
                image=info['img_path'],
                text=info['text'],
                sample_id=sample_id,
                object_id=info.get('ref_id') if info.get('ref_id') is not None else sample_id,
                gt=load_mask(info),
                colour=extra.get('colour'),
                category=extra.get('category', info.get('category')),
            )
        )
    return targets


def sentence_swap_controls(
    model, targets: Sequence[dict], batch_size: int = 8, iou_thrs: Sequence[float] = (0.5,)
) -> OrderedDict:
    """Run the model on every target's sentence and score the sentence swaps.

    Args:
        model (nn.Module): From :func:`~btdnet.apis.init_model`.
        targets (Sequence[dict]): From :func:`swap_targets`: ``image`` the image file
            :func:`~btdnet.apis.inference_model` reads, ``text`` the sentence, ``gt`` the mask
            at the image's size, and the attributes.
        batch_size (int): Sentences per forward pass. Default 8.
        iou_thrs (Sequence[float]): Thresholds of ``Pr@X``. Default (0.5,).

    Returns:
        OrderedDict: As :func:`swap_scores`.
    """
    if not targets:
        raise ValueError('sentence_swap_controls: expected targets, found none')
    by_image = _by_image(targets)
    predictions = [None] * len(targets)
    step = max(1, len(by_image) // 4)
    for done, (image, members) in enumerate(by_image.items(), 1):
        results = inference_model(
            model, image, [targets[k]['text'] for k in members], batch_size=batch_size
        )
        for k, result in zip(members, results):
            predictions[k] = result.pred_sem_seg.data
        if done % step == 0 or done == len(by_image):
            print_log(f'sentence swaps: predicted {done}/{len(by_image)} images', logger='current')
    return swap_scores(swap_records(targets, predictions), iou_thrs)
