"""Shared pieces of the benchmark scripts in tools/analysis_tools/."""

import copy
import time

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

SENTENCE = 'the white storage tank at the bottom left of the image next to the road'
KEY_SPANS = [[4, 22]]  # "white storage tank"


def without_pretrained_weights(model_cfg):
    """A copy of a BTDNet model config that needs no pretrained files.

    The Swin loses its ``init_cfg``; a BERT read from ``pretrained`` is built from
    ``BertConfig()`` instead, whose defaults are the bert-base-uncased architecture (the
    tokenizer then comes from the bundled bert-base-uncased vocabulary). Speed and memory are
    those of the pretrained model; the outputs are not.
    """
    model_cfg = copy.deepcopy(model_cfg)
    backbone = model_cfg.backbone
    backbone.vision.init_cfg = None
    text = backbone.text_encoder
    if text.get('pretrained') is not None:
        text.pretrained = None
        text.bert_config = dict()
    return model_cfg


def synthetic_batch(batch_size: int, height: int, width: int, seed: int = 0) -> dict:
    """A data batch as the dataloader yields it: uint8 images, sentences, random 0/1 masks."""
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen))
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                scale_factor=(1.0, 1.0),
                text=SENTENCE,
                key_spans=KEY_SPANS,
                category='storage tank',
                sample_id='benchmark',
            )
        )
        mask = torch.randint(0, 2, (1, height, width), generator=gen)
        sample.gt_sem_seg = PixelData(data=mask)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple:
    """``(seconds, fn())``: the wall time of ``fn`` with the device synchronised around it."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result
