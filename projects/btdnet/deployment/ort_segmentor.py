"""Run an exported BTDNet (``model.onnx`` + tokenizer) with ONNX Runtime, as mmseg runs models.

:class:`ONNXRuntimeSegmentor` is a segmentor whose network is an ONNX Runtime session: the
config's data preprocessor, mmseg's whole / slide inference and post-processing are those of
the PyTorch model, so ``btdnet.apis.inference_model`` (and ``tools/infer.py --backend
onnxruntime``) return the same ``SegDataSample`` results. Build it through
``btdnet.apis.init_model(CONFIG, DIR, backend='onnxruntime')``.

:func:`btdnet.apis.build_tile_predictor` gives its tile predictor for whole-scene inference
(``tools/infer_scene.py --backend onnxruntime``), tiles of the exported shape.
"""

from __future__ import annotations

import json
import logging
import os.path as osp

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import OptSampleList, SampleList
from torch import Tensor

from ..models.text_encoders import tokenize_referring
from .onnx_export import MANIFEST, MANIFEST_VERSION

__all__ = ['ONNXRuntimeSegmentor', 'read_manifest']

DEFAULT_DATASET_META = dict(classes=('background', 'target'), palette=[[0, 0, 0], [255, 64, 32]])


# The keys ONNXRuntimeSegmentor reads.
MANIFEST_KEYS = (
    'files',
    'input_shape',
    'max_length',
    'key_phrase_masking',
    'uses_prior',
)


def read_manifest(model_dir: str) -> dict:
    """The ``deploy.json`` of an exported folder, checked for the files it names.

    Raises:
        FileNotFoundError: No such folder, or it lacks ``deploy.json`` / the graph.
        ValueError: ``deploy.json`` is not a BTDNet ONNX manifest, is of another version, or
            lacks a key (named).
    """
    if not osp.isdir(model_dir):
        raise FileNotFoundError(
            f'ONNX Runtime: expected the folder tools/deployment/pytorch2onnx.py wrote '
            f'(model.onnx, tokenizer, {MANIFEST}), found no folder {model_dir}'
        )
    path = osp.join(model_dir, MANIFEST)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'ONNX Runtime: {model_dir} has no {MANIFEST}; export the model with '
            'tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT --out DIR'
        )
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f'ONNX Runtime: {path} is not readable JSON ({err})') from err
    if not isinstance(manifest, dict) or manifest.get('format') != 'btdnet-onnx':
        raise ValueError(f'ONNX Runtime: {path} is not a BTDNet ONNX manifest')
    if manifest.get('version') != MANIFEST_VERSION:
        raise ValueError(
            f'ONNX Runtime: {path} has manifest version {manifest.get("version")!r}; this btdnet '
            f'reads version {MANIFEST_VERSION}: export the model again with this version'
        )
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ValueError(
            f'ONNX Runtime: {path} lacks the key{"s" if len(missing) > 1 else ""} '
            f'{", ".join(missing)}; export the model again'
        )
    return manifest


@MODELS.register_module()
class ONNXRuntimeSegmentor(BaseSegmentor):
    """An exported BTDNet run by ONNX Runtime, with the PyTorch model's pre- and post-processing.

    The config's ``data_preprocessor`` normalises the images (the graph takes them normalised),
    the sentences are tokenised with the saved tokenizer (E, and E_m when the model uses the
    prior knowledge), ``test_cfg`` picks whole or slide inference (mmseg's own loops), and the
    logits are resized to the original size as ``BTDNet.predict`` does. The graph takes one
    image size (``deploy.json``'s ``input_shape``): the whole-inference network input, or the
    slide crop.

    Args:
        model_dir (str): The folder ``tools/deployment/pytorch2onnx.py`` wrote.
        config (Config): The model's config (the one exported).
        device (str): ``'cpu'``, or ``'cuda'`` / ``'cuda:N'`` where ONNX Runtime has its CUDA
            provider. Default ``'cpu'``.
        precision (str): ``'fp32'`` (``model.onnx``) or ``'int8'`` (``model_int8.onnx``).
        flush_denormal (bool): Set ONNX Runtime's denormals-as-zero for this session (CPU).
        threads (int, optional): ONNX Runtime's intra-op threads; default its own choice.
    """

    # mmseg's whole / slide inference loops: they call encode_decode, which runs the session.
    whole_inference = EncoderDecoder.whole_inference
    slide_inference = EncoderDecoder.slide_inference

    def __init__(
        self,
        model_dir: str,
        config: Config,
        device: str = 'cpu',
        precision: str = 'fp32',
        flush_denormal: bool = True,
        threads: int | None = None,
    ) -> None:
        manifest = read_manifest(model_dir)
        if precision not in manifest.get('files', {}):
            raise FileNotFoundError(
                f'ONNX Runtime: {model_dir} has no {precision} model (it has '
                f'{sorted(manifest.get("files", {}))}); export with --int8 for the int8 one'
            )
        graph = osp.join(model_dir, manifest['files'][precision])
        if not osp.isfile(graph):
            raise FileNotFoundError(f'ONNX Runtime: {graph} named in {MANIFEST} is missing')
        model_cfg = config.model
        preprocessor = model_cfg.get('data_preprocessor')
        # Built from mmseg's registry (whatever the default scope), as BTDNet's is.
        super().__init__(data_preprocessor=MODELS.build(preprocessor) if preprocessor else None)
        self.cfg = config
        self.dataset_meta = dict(manifest.get('dataset_meta') or DEFAULT_DATASET_META)
        if 'classes' in self.dataset_meta:  # a tuple in mmseg's metainfo, a list in JSON
            self.dataset_meta['classes'] = tuple(self.dataset_meta['classes'])
        self.manifest = manifest
        self.test_cfg = ConfigDict(model_cfg.get('test_cfg') or dict(mode='whole'))
        self.align_corners = bool((model_cfg.get('decode_head') or {}).get('align_corners', False))
        self.out_channels = 2
        self.input_shape = tuple(manifest['input_shape'])
        self.uses_prior = bool(manifest['uses_prior'])
        from transformers import BertTokenizerFast

        self.tokenizer = BertTokenizerFast.from_pretrained(model_dir, local_files_only=True)
        self.max_length = int(manifest['max_length'])
        self.key_phrase_masking = bool(manifest['key_phrase_masking'])
        self.notices_logged = set()
        self.session = self._session(graph, device, flush_denormal, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._inference_text = None
        self.eval()

    @staticmethod
    def _session(graph: str, device: str, flush_denormal: bool, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        if flush_denormal:
            options.add_session_config_entry('session.set_denormal_as_zero', '1')
        dev = torch.device(device)
        if dev.type == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise ValueError(
                    f'ONNX Runtime: device {device!r} asks for the CUDA provider, but this '
                    f'onnxruntime has only {ort.get_available_providers()} (install '
                    'onnxruntime-gpu, or use --device cpu)'
                )
            providers = [('CUDAExecutionProvider', dict(device_id=dev.index or 0))]
        else:
            providers = ['CPUExecutionProvider']
        return ort.InferenceSession(graph, options, providers=providers)

    # ------------------------------------------------------------------ text
    def _log_once(self, key: str, msg: str, level: int = logging.INFO) -> None:
        if key not in self.notices_logged:
            self.notices_logged.add(key)
            print_log(msg, logger='current', level=level)

    def tokenize(self, samples: SampleList | list[dict]) -> dict[str, Tensor]:
        """Token tensors of the batch's sentences (metainfo ``text``, ``key_spans``), with the
        saved tokenizer, as ``BTDNet.tokenize`` (E_m only when the model uses the prior)."""
        texts, spans = [], []
        for i, sample in enumerate(samples):
            meta = sample if isinstance(sample, dict) else sample.metainfo
            if 'text' not in meta:
                raise KeyError(f'ONNX Runtime: data sample {i} has no "text" in its metainfo')
            texts.append(meta['text'])
            spans.append(list(meta.get('key_spans', []) or []))
        tokens = tokenize_referring(
            self.tokenizer,
            texts,
            spans,
            max_length=self.max_length,
            key_phrase_masking=self.key_phrase_masking,
            log_once=self._log_once,
        )
        if not self.uses_prior:
            del tokens['masked_input_ids'], tokens['masked_attention_mask']
        return tokens

    # ------------------------------------------------------------------ network
    def run_graph(self, image: Tensor, tokens: dict[str, Tensor]) -> Tensor:
        """The session's logits (B, 2, H/4, W/4) (H x W with a refiner) for images (B, 3, H, W)."""
        if tuple(image.shape[2:]) != self.input_shape:
            raise ValueError(
                f'ONNX Runtime: the graph was exported for {self.input_shape[0]} x '
                f'{self.input_shape[1]} inputs, found {image.shape[2]} x {image.shape[3]}: '
                "export again with this size (--shape), or match the config's test pipeline "
                '(whole mode) / crop_size (slide mode) to the exported size'
            )
        feeds = dict(image=image.detach().float().cpu().numpy())
        for name in self.input_names[1:]:
            feeds[name] = tokens[name].cpu().numpy()
        (logits,) = self.session.run(['seg_logits'], feeds)
        return torch.from_numpy(logits).to(image.device)

    def inference(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """mmseg's whole / slide inference, with the sentences tokenised once for all crops."""
        if len(batch_img_metas) != inputs.shape[0]:
            raise ValueError(
                f'ONNX Runtime: {inputs.shape[0]} images but {len(batch_img_metas)} sentences'
            )
        self._inference_text = self.tokenize(batch_img_metas)
        try:
            return EncoderDecoder.inference(self, inputs, batch_img_metas)
        finally:
            self._inference_text = None

    def encode_decode(self, inputs: Tensor, batch_img_metas: list[dict]) -> Tensor:
        """Logits (B, 2, h, w) at the size of ``inputs`` (an image or a slide crop)."""
        tokens = self._inference_text
        if tokens is None:
            tokens = self.tokenize(batch_img_metas)
        logits = self.run_graph(inputs, tokens)
        # As the decode head's predict_by_feat: to the crop size in slide inference, else to
        # the padded input size.
        meta = batch_img_metas[0]
        if isinstance(meta['img_shape'], torch.Size):
            size = meta['img_shape']
        else:
            size = meta.get('pad_shape', meta['img_shape'])[:2]
        return resize(logits, size=size, mode='bilinear', align_corners=self.align_corners)

    def predict(self, inputs: Tensor, data_samples: OptSampleList = None) -> SampleList:
        """As ``BTDNet.predict``: ``pred_sem_seg`` and ``seg_logits`` at each ``ori_shape``."""
        if data_samples is None:
            raise ValueError(
                'ONNX Runtime: data samples with the sentence (metainfo "text") are required.'
            )
        metas = [sample.metainfo for sample in data_samples]
        return self.postprocess_result(self.inference(inputs, metas), data_samples)

    def _forward(self, inputs: Tensor, data_samples: OptSampleList = None) -> Tensor:
        """Tensor mode: the graph's logits, as ``BTDNet._forward``'s."""
        return self.run_graph(inputs, self.tokenize(data_samples))

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        raise NotImplementedError('ONNX Runtime models only predict; train the PyTorch model.')

    def extract_feat(self, inputs: Tensor) -> None:
        raise NotImplementedError('ONNX Runtime models give logits only (the graph is whole).')
