"""Export a trained BTDNet to ONNX: the tensor-mode network, its tokenizer and a manifest.

.. code:: python

    from btdnet.deployment import export_onnx
    export_onnx('configs/btdnet/btdnet_tiny_synthetic.py', 'iter_40.pth', 'deploy/tiny')

writes into the folder:

* ``model.onnx``: image + tokens -> (B, 2, H/4, W/4) logits [O_bg, O_fg] ((B, 2, H, W) for a
  model with a refiner), batch dynamic;
* ``model_int8.onnx`` with ``int8=True``: ONNX Runtime's dynamic int8 quantisation of it;
* the tokenizer files (``tokenizer.json``, ``vocab.txt``, ...): tokenisation stays in Python;
* ``deploy.json``: what the graph expects (input names, size, normalisation, token budget) and
  the parity measured against PyTorch at export time.

Graph inputs (see :data:`GRAPH_INPUTS`): ``image`` float32 (B, 3, H, W), the image as the
config's ``data_preprocessor`` hands it to the network, i.e. already normalised (channels
swapped to RGB when ``bgr_to_rgb``, then ``(x - mean) / std``; both are in ``deploy.json``);
``input_ids`` and ``attention_mask`` int64 (B, N) of the sentence E; with the prior knowledge
(``use_prior_knowledge=True``, the paper's model) also ``masked_input_ids`` and
``masked_attention_mask`` of the key-phrase-masked sentence E_m, since O_bg comes from L_m.
H and W are fixed at export (Swin's windows and masks are laid out for one size): the network
input of whole inference, or the crop size of slide inference.

Exporter: torch's dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, with
``onnxscript``), opset 18, the batch a symbolic dimension. (The TorchScript exporter turns every
size computed in Python into a constant, so its graphs only run at the traced batch size.) Where
the model's inference code does not export, an equal form is traced instead, each tested
against the original:

* the multi-scale deformable attention: the ``grid_sample`` form (ONNX ``GridSample``, opset
  >= 16), never mmcv's CUDA kernel or the ``embedding_bag`` gather (no ONNX operator);
* the BSC's text-generated convolution: a sum of shifted products (ONNX ``Conv`` takes its
  group count, here the batch size, as a constant);
* mmseg Swin's ``window_reverse``, which computes the batch size with ``int()`` and so fixes it:
  a reshape that leaves the batch to the graph (patched on the instances for the export only).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os.path as osp
import types
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from torch import nn

from ..utils.output_files import check_folder_replaceable, staged_folder

if TYPE_CHECKING:
    import onnx

__all__ = [
    'GRAPH_INPUTS',
    'MANIFEST',
    'MANIFEST_VERSION',
    'ExportError',
    'check_exportable',
    'export_onnx',
    'exported_shape',
    'symbolic_batch_swin',
    'test_steps',
]

#: Names of the graph inputs (the last two only for models with the prior knowledge).
GRAPH_INPUTS = ('image', 'input_ids', 'attention_mask', 'masked_input_ids', 'masked_attention_mask')
#: The manifest written beside the graph, and the version of its layout.
MANIFEST = 'deploy.json'
MANIFEST_VERSION = 1
#: Every file an export may write (the tokenizer's as BertTokenizerFast saves them).
EXPORT_FILES = (
    'model.onnx',
    'model_int8.onnx',
    MANIFEST,
    'vocab.txt',
    'tokenizer.json',
    'tokenizer_config.json',
    'special_tokens_map.json',
)
MIN_OPSET = 16  # ONNX GridSample
DEFAULT_OPSET = 18
_EXAMPLE_TEXTS = ('the white storage tank at the bottom left', 'a small ship near the harbour')


class ExportError(ValueError):
    """A config or argument that cannot give an ONNX model, said before any long work."""


def _load_config(config: str | Path | Config, cfg_options: dict | None) -> Config:
    if isinstance(config, (str, Path)):
        if not osp.isfile(config):
            raise FileNotFoundError(f'export: expected a config file, found no file {config}')
        config = Config.fromfile(str(config))
    config = copy.deepcopy(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    return config


def test_steps(cfg: Config) -> list:
    """The config's test pipeline (``test_pipeline``, else the test dataloader's)."""
    if 'test_pipeline' in cfg:
        return list(cfg.test_pipeline)
    return list(cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', []))


def exported_shape(cfg: Config) -> tuple[int, int] | None:
    """The (H, W) a graph of this config must take, from the config alone.

    Slide inference: ``test_cfg.crop_size``. Whole inference: the fixed size of the test
    pipeline's ``Resize`` (``keep_ratio=False``; mmcv's ``scale`` is (w, h)), else the data
    preprocessor's ``size``. None when the network input size varies (keep-ratio resizing).
    """
    test_cfg = cfg.model.get('test_cfg') or {}
    if test_cfg.get('mode', 'whole') == 'slide':
        return tuple(int(v) for v in test_cfg['crop_size'])
    resizes = [s for s in test_steps(cfg) if s.get('type') in ('Resize', 'RandomResize')]
    if resizes:
        step = resizes[-1]
        if step.get('type') != 'Resize' or step.get('keep_ratio', False) or 'scale' not in step:
            return None
        scale = step['scale']
        if isinstance(scale, (int, float)):
            return int(scale), int(scale)
        return int(scale[1]), int(scale[0])
    size = (cfg.model.get('data_preprocessor') or {}).get('size')
    return tuple(int(v) for v in size) if size else None


def check_exportable(
    cfg: Config, shape: tuple[int, int] | None = None, opset: int = DEFAULT_OPSET
) -> tuple:
    """Says why a config cannot be exported, before a model is built.

    Args:
        cfg (Config): The full config (model and test pipeline).
        shape (tuple[int, int], optional): The (H, W) asked for; None: the config's own.
        opset (int): ONNX opset.

    Returns:
        tuple[int, int]: The (H, W) the graph will take.

    Raises:
        ExportError: With every problem found, each with what to change.
    """
    problems = []
    model = cfg.get('model') or {}
    if model.get('type') != 'BTDNet':
        problems.append(
            f"the model is {model.get('type')!r}; only 'BTDNet' models export here (the "
            'graph takes an image and the token ids of a sentence)'
        )
    else:
        backbone = model.get('backbone') or {}
        text_encoder = backbone.get('text_encoder') or {}
        if backbone.get('type') != 'BidirectionalFeatureExtractor':
            problems.append(
                f"the backbone is {backbone.get('type')!r}, not 'BidirectionalFeatureExtractor'"
            )
        vision = str((backbone.get('vision') or {}).get('type'))
        if vision.startswith('mmpretrain.'):
            problems.append(
                f'the vision backbone is {vision!r}, whose window_reverse fixes the batch size '
                "in a trace (int() of a size); use mmseg's type='SwinTransformer' (the same "
                'architecture; tools/model_converters/swin2btdnet.py output loads into both)'
            )
        if text_encoder.get('type') != 'BertTextEncoder':
            problems.append(
                f"the text encoder is {text_encoder.get('type')!r}, not 'BertTextEncoder' (its "
                'tokenizer is saved beside the graph)'
            )
    if opset < MIN_OPSET:
        problems.append(
            f'opset {opset} has no GridSample (the deformable attention needs opset >= {MIN_OPSET})'
        )
    own = exported_shape(cfg) if model.get('type') == 'BTDNet' else None
    if model.get('type') == 'BTDNet' and own is None:
        problems.append(
            'in whole inference the test pipeline resizes with keep_ratio=True (or at random), '
            'so the network input size changes from image to image, and an ONNX graph takes '
            'one size: resize to a fixed size (Resize keep_ratio=False) or use slide inference '
            "(model.test_cfg=dict(mode='slide', crop_size=..., stride=...)), whose crops have "
            'one size'
        )
    if shape is not None:
        if len(shape) != 2 or min(shape) < 32:
            problems.append(f'--shape must be two sizes >= 32 (H W), found {tuple(shape)}')
        elif own is not None and tuple(shape) != tuple(own):
            problems.append(
                f'--shape {tuple(shape)} is not the size the config feeds the network, {own} '
                '(the test pipeline resize in whole mode, crop_size in slide mode): the graph '
                'could not take its inputs; leave --shape out or change the config to match'
            )
    if problems:
        raise ExportError('this config cannot be exported to ONNX:\n  ' + '\n  '.join(problems))
    return tuple(shape) if shape is not None else tuple(own)


class _TensorMode(nn.Module):
    """BTDNet's tensor mode on tensors only: the module the exporter traces."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        masked_input_ids: torch.Tensor | None = None,
        masked_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        text = dict(input_ids=input_ids, attention_mask=attention_mask)
        if masked_input_ids is not None:
            text.update(
                masked_input_ids=masked_input_ids, masked_attention_mask=masked_attention_mask
            )
        return self.model._forward(image, text=text)


def _example_inputs(model: nn.Module, shape: tuple[int, int], batch: int = 2) -> dict:
    """A seeded normalised image batch and two tokenised sentences (with key spans)."""
    from ..datasets.transforms.text import key_phrase_spans

    texts = [_EXAMPLE_TEXTS[i % len(_EXAMPLE_TEXTS)] for i in range(batch)]
    samples = [dict(text=t, key_spans=[list(s) for s in key_phrase_spans(t)]) for t in texts]
    uses_masked = model._uses_masked_text(for_loss=False)
    tokens = model.tokenize(samples, with_masked=uses_masked, device=torch.device('cpu'))
    image = torch.randn(batch, 3, *shape, generator=torch.Generator().manual_seed(0))
    return dict(image=image, **tokens)


def _window_reverse(self, windows: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """mmseg ``ShiftWindowMSA.window_reverse`` without computing the batch size in Python.

    Args:
        windows (Tensor): (num_windows * B, window, window, C).
        height (int): Padded map height H.
        width (int): Padded map width W.

    Returns:
        Tensor: (B, H, W, C).
    """
    size, channels = self.window_size, windows.shape[-1]
    x = windows.view(-1, height // size, width // size, size, size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


@contextlib.contextmanager
def symbolic_batch_swin(model: nn.Module):
    """Within the block, mmseg Swin's windows are reversed without fixing the batch size."""
    from mmseg.models.backbones.swin import ShiftWindowMSA

    patched = [m for m in model.modules() if isinstance(m, ShiftWindowMSA)]
    for module in patched:
        module.window_reverse = types.MethodType(_window_reverse, module)
    try:
        yield model
    finally:
        for module in patched:
            del module.window_reverse


def _jsonable(value):
    """``value`` with tuples as lists, or None when JSON cannot hold it."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def _max_difference(path: str, inputs: dict, expected: torch.Tensor) -> float:
    """Largest |ONNX Runtime - PyTorch| logit over the batch and over its first sample alone
    (a graph fixed to the traced batch size fails the second)."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for size in (len(expected), 1):
        feeds = {name: inputs[name][:size].numpy() for name in names}
        got = torch.from_numpy(session.run(None, feeds)[0])
        worst = max(worst, float((got - expected[:size]).abs().max()))
    return worst


def text_encoder_nodes(graph: onnx.ModelProto) -> list[str]:
    """Names of the graph's MatMul / Gemm nodes inside the text encoder (BERT).

    int8 leaves them in float: the sentence's few tokens cost little there, and quantising them
    moved the demo model's masks most (mean mask IoU against PyTorch on its test split 0.969 with
    them quantised, 0.996 without; oIoU 84.98 and 86.30 against PyTorch's 86.29). The exporter
    records each node's module path in its ``namespace`` metadata.
    """
    names = []
    for node in graph.graph.node:
        if node.op_type in ('MatMul', 'Gemm'):
            meta = {p.key: p.value for p in node.metadata_props}
            if 'model.backbone.text_encoder' in meta.get('namespace', ''):
                names.append(node.name)
    return names


def export_onnx(
    config: str | Path | Config,
    checkpoint: str,
    out_dir: str,
    shape: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    int8: bool = False,
    overwrite: bool = False,
    cfg_options: dict | None = None,
) -> dict:
    """Export a BTDNet checkpoint to ``out_dir`` (graph, tokenizer, manifest).

    Arguments are checked and the config is read before anything is built; the export then
    runs on the CPU. After writing, the graph is validated with ``onnx.checker`` and ONNX
    Runtime's logits are compared with PyTorch's on a seeded batch of 2 and on its first sample
    alone (the largest absolute difference goes to ``deploy.json`` and the log).

    Args:
        config (str | Path | Config): The model's config.
        checkpoint (str): Its trained checkpoint.
        out_dir (str): Folder to write into; created if missing.
        shape (tuple[int, int], optional): (H, W) of the graph's image; default the config's
            network input (whole inference) or crop size (slide inference), which it must equal.
        opset (int): ONNX opset (>= 16). Default 18.
        optimize (bool): Let the exporter optimise the graph (constant folding, fusions);
            ONNX Runtime optimises it again when it loads it. Default True.
        int8 (bool): Also write ``model_int8.onnx``, ONNX Runtime's dynamic int8 quantisation
            (weights int8, activations quantised on the fly) of every MatMul / Gemm except the
            text encoder's (:func:`text_encoder_nodes`).
        overwrite (bool): Write into a folder that is not empty (the files the export writes
            are replaced, others kept). Without it such a folder is refused, naming its files.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        dict: The manifest (also written to ``out_dir/deploy.json``).

    Raises:
        ExportError: The config cannot be exported (why and what to change), or ``out_dir``
            is not empty and ``overwrite`` is False.
        FileNotFoundError: The config or checkpoint is missing.
    """
    cfg = _load_config(config, cfg_options)
    shape = check_exportable(cfg, shape, opset)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'export: expected a checkpoint file, found no file {checkpoint}')
    try:
        check_folder_replaceable(out_dir, EXPORT_FILES, overwrite)
    except FileExistsError as err:
        raise ExportError(f'--out {err}') from None
    with staged_folder(out_dir) as staging:  # a failed export leaves no folder behind
        manifest = _export(cfg, checkpoint, staging, shape, opset, optimize, int8)
    print_log(
        f'export: wrote {out_dir} (model.onnx{", model_int8.onnx" if int8 else ""}, tokenizer, '
        f'{MANIFEST}); ONNX Runtime vs PyTorch max |logit difference|: '
        + ', '.join(f'{k.split("_")[0]} {v:.2e}' for k, v in manifest['parity_on_export'].items()),
        logger='current',
    )
    return manifest


def _export(cfg, checkpoint, out_dir, shape, opset, optimize, int8) -> dict:
    """Load, trace, check and (optionally) quantise into ``out_dir``; returns the manifest."""
    import onnx

    from ..apis import init_model

    graph_path = osp.join(out_dir, 'model.onnx')
    print_log(f'export: loading {checkpoint}', logger='current')
    model = init_model(cfg, checkpoint, device='cpu', flush_denormal=False)
    wrapper = _TensorMode(model).eval()
    example = _example_inputs(model, shape)
    names = [n for n in GRAPH_INPUTS if n in example]
    args = tuple(example[n] for n in names)
    print_log(
        f'export: tracing {type(model).__name__} at {shape[0]} x {shape[1]}, opset {opset} '
        '(torch.export, then ONNX; minutes) ...',
        logger='current',
    )
    batch = torch.export.Dim('batch', min=1, max=1024)
    with torch.no_grad(), symbolic_batch_swin(model):
        expected = wrapper(*args)
        torch.onnx.export(
            wrapper,
            args,
            graph_path,
            input_names=names,
            output_names=['seg_logits'],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            optimize=optimize,
            dynamic_shapes={n: {0: batch} for n in names},
        )
    onnx.checker.check_model(graph_path)
    text_encoder = model.backbone.text_encoder
    text_encoder.tokenizer.save_pretrained(out_dir)

    parity = dict(fp32_max_abs_diff=_max_difference(graph_path, example, expected))
    files = dict(fp32='model.onnx')
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8_path = osp.join(out_dir, 'model_int8.onnx')
        print_log('export: quantising to int8 (dynamic) ...', logger='current')
        quantize_dynamic(
            graph_path,
            int8_path,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=['MatMul', 'Gemm'],
            nodes_to_exclude=text_encoder_nodes(onnx.load(graph_path)),
        )
        files['int8'] = 'model_int8.onnx'
        parity['int8_max_abs_diff'] = _max_difference(int8_path, example, expected)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    manifest = dict(
        format='btdnet-onnx',
        version=MANIFEST_VERSION,
        files=files,
        inputs=names,
        output='seg_logits',
        input_shape=list(shape),
        output_stride=1 if getattr(model, 'with_refiner', False) else 4,
        max_length=int(text_encoder.max_length),
        key_phrase_masking=bool(text_encoder.key_phrase_masking),
        uses_prior=len(names) == len(GRAPH_INPUTS),
        image=dict(
            dtype='float32',
            layout='B, 3, H, W',
            bgr_to_rgb=bool(preprocessor.get('bgr_to_rgb', False)),
            mean=list(preprocessor.get('mean') or []),
            std=list(preprocessor.get('std') or []),
            note='normalised as the data preprocessor does: channels swapped when bgr_to_rgb, '
            'then (x - mean) / std',
        ),
        opset=opset,
        exporter=f'torch.onnx.export(dynamo=True, optimize={optimize})',
        torch=torch.__version__,
        checkpoint=osp.basename(checkpoint),
        dataset_meta=_jsonable(getattr(model, 'dataset_meta', None)),
        parity_on_export=parity,
    )
    with open(osp.join(out_dir, MANIFEST), 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=2)
    return manifest
