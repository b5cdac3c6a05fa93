"""Bidirectional feature extractor: Swin and BERT stages interleaved with BSC (Eq. 1-4)."""

import os.path as osp

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from mmseg.utils import ConfigType
from torch import Tensor

_CONVERTER = 'tools/model_converters/swin2btdnet.py'


def _checkpoint_keys(path: str) -> list[str] | None:
    """Parameter names in a checkpoint file, read without materialising it where possible."""
    try:
        try:
            ckpt = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
        except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # unreadable here: the Swin loader reports it
        return None
    if not isinstance(ckpt, dict):
        return None
    for key in ('state_dict', 'model'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    return [str(k) for k in ckpt]


@MODELS.register_module()
class BidirectionalFeatureExtractor(BaseModule):
    """Swin (vision) and BERT (text) run stage by stage, fused by a BSC after each stage (Eq. 1).

    For stage i = 1..4::

        V_i = SwinBlocks_i(PatchMerging(V'_{i-1}))     L_i = BertLayers_i(L'_{i-1})
        V'_i, L'_i = BSC_i(V_i, L_i)                   (Eq. 1-4; residuals inside the BSC)
        output_i = norm_i(V'_i)                        (the Swin out norm, as the decoder reads it)

    BSC sits on each stage's output before patch merging (as LAVT's PWAM): patch merging passes
    the fused V'_i (not normalised) to stage i + 1, and the decoder reads ``norm_i(V'_i)``. A
    stage without BSC passes V_i and L_i unchanged; with ``one_way`` L_i passes unchanged and only
    V_i is updated. Besides, the masked sentence E_m, when given, runs through the whole BERT
    without BSC to give L_m (batched with E through each BERT stage; only E's rows go through the
    BSCs). The sentences come in as token ids (the segmentor tokenises them); the extractor
    reads tensors only.

    ``vision`` is a Swin built from its own config, either mmpretrain's
    (``type='mmpretrain.SwinTransformer'``) or mmseg's (``type='SwinTransformer'``); its out
    norms must exist for all four stages (``out_indices=(0, 1, 2, 3)``, the default filled in
    when the config leaves it out), and its own forward is not used. Pretrained weights come
    from its ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``, loaded by the Swin
    implementation (which also resizes relative position tables) when ``init_weights`` runs;
    the official Swin release must first be converted with ``tools/model_converters/
    swin2btdnet.py``. A missing or unconverted file is an error at ``init_weights``. For a
    checkpoint of another window size prefer mmseg's Swin: mmpretrain 1.2.0 resizes the tables
    with ``scipy.interpolate.interp2d``, which SciPy >= 1.14 no longer has.

    ``bsc`` is an ``nn.ModuleList`` with one entry per stage: a
    :class:`BidirectionalSpatialCorrelation`, or ``nn.Identity()`` where ``bsc_stages`` disables
    it (no parameters). Parameter names start with ``vision.``, ``text_encoder.`` (the two
    encoders, trained at the lower learning rate) or ``bsc.``.

    Args:
        vision (ConfigType): Swin config.
        text_encoder (ConfigType): :class:`BertTextEncoder` config; its number of stages must
            equal Swin's.
        bsc_stages (tuple[bool]): Which stages have a BSC. Default all four.
        bsc_cfg (dict, optional): Extra keyword arguments of every BSC (e.g. ``v2l_kernels``).
        one_way (bool): "Only V2L" ablation: the BSCs update vision only. Default False.
        init_cfg (dict, optional): mmengine init config of the extractor. Default None.
    """

    def __init__(
        self,
        vision: ConfigType,
        text_encoder: ConfigType,
        bsc_stages: tuple = (True, True, True, True),
        bsc_cfg: dict | None = None,
        one_way: bool = False,
        init_cfg=None,
    ):
        super().__init__(init_cfg=init_cfg)
        vision = dict(vision)
        vision_type = vision.get('type')
        if isinstance(vision_type, str) and vision_type.startswith('mmpretrain.'):
            import mmpretrain.models  # noqa: F401  (registers mmpretrain's backbones)
        vision.setdefault('out_indices', (0, 1, 2, 3))
        self.vision = MODELS.build(vision)
        self.text_encoder = MODELS.build(text_encoder)

        num_stages = len(self.vision.stages)
        missing_norms = [i for i in range(num_stages) if not hasattr(self.vision, f'norm{i}')]
        if missing_norms or getattr(self.vision, 'out_after_downsample', False):
            raise ValueError(
                'BidirectionalFeatureExtractor needs a Swin with an out norm on every stage and '
                f'outputs before downsampling: set out_indices={tuple(range(num_stages))} and '
                f'out_after_downsample=False in the vision config (norms missing for stages '
                f'{missing_norms}).'
            )
        if self.text_encoder.num_stages != num_stages or len(bsc_stages) != num_stages:
            raise ValueError(
                f'BidirectionalFeatureExtractor: Swin has {num_stages} stages, the text encoder '
                f'{self.text_encoder.num_stages} (stage_layers) and bsc_stages has '
                f'{len(bsc_stages)} entries; all three must agree.'
            )
        self.channels = [int(c) for c in self.vision.num_features]
        self.bsc_stages = tuple(bool(s) for s in bsc_stages)
        self.one_way = one_way
        self.bsc = nn.ModuleList()
        for enabled, channels in zip(self.bsc_stages, self.channels):
            if enabled:
                cfg = dict(
                    type='BidirectionalSpatialCorrelation',
                    visual_channels=channels,
                    text_channels=self.text_encoder.hidden_size,
                    one_way=one_way,
                )
                cfg.update(bsc_cfg or {})
                self.bsc.append(MODELS.build(cfg))
            else:
                self.bsc.append(nn.Identity())

    def init_weights(self):
        """Check the Swin checkpoint before the Swin implementation loads it."""
        self._check_vision_checkpoint()
        super().init_weights()

    def _check_vision_checkpoint(self):
        init_cfg = self.vision.init_cfg
        if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
            return
        path = init_cfg.get('checkpoint')
        if not isinstance(path, str) or '://' in path:
            return  # a URL or an mmengine prefix: mmengine fetches and reports it
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'BidirectionalFeatureExtractor: the Swin checkpoint {path!r} named in the vision '
                "config's init_cfg does not exist. For the paper's model download the official "
                'Swin-B ImageNet-22k window-12 weights, swin_base_patch4_window12_384_22k.pth '
                '(github.com/microsoft/Swin-Transformer, release v1.0.0), convert them with '
                f'`python {_CONVERTER} swin_base_patch4_window12_384_22k.pth {path}`, or set '
                'init_cfg=None to train from scratch.'
            )
        keys = _checkpoint_keys(path)
        if keys is not None and any(k.startswith('layers.') for k in keys):
            raise ValueError(
                f'BidirectionalFeatureExtractor: {path!r} has the key layout of the official Swin '
                "release ('layers.*'), which the vision Swin does not read. Convert it once with "
                f'`python {_CONVERTER} {path} CONVERTED.pth` and name CONVERTED.pth in init_cfg.'
            )

    def _patch_embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Patch embedding (+ absolute position embedding if the Swin has one), as Swin does."""
        vision = self.vision
        x, hw_shape = vision.patch_embed(x)
        if getattr(vision, 'use_abs_pos_embed', False):
            if hasattr(vision, 'patch_resolution'):  # mmpretrain resizes to the input
                from mmpretrain.models.utils import resize_pos_embed

                x = x + resize_pos_embed(
                    vision.absolute_pos_embed,
                    vision.patch_resolution,
                    hw_shape,
                    vision.interpolate_mode,
                    vision.num_extra_tokens,
                )
            else:
                x = x + vision.absolute_pos_embed
        return vision.drop_after_pos(x), hw_shape

    def forward(
        self,
        inputs: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        masked_input_ids: Tensor | None = None,
        masked_attention_mask: Tensor | None = None,
        masked_text: Tensor | None = None,
    ) -> dict:
        """Extract fused visual and text features from images and token ids.

        The sentences arrive tokenised (``BTDNet.tokenize``): the extractor reads tensors only,
        as mmseg backbones do, so the tensor mode can be traced and exported. L_m, the masked
        sentence E_m through the whole BERT, is computed here (batched with E through each BERT
        stage) when ``masked_input_ids`` is given, taken as is when ``masked_text`` is (slide
        inference encodes it once for all crops), and left out when neither is (no prior
        knowledge at inference: nothing reads it).

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images.
            input_ids (Tensor): (B, N) token ids of the sentences E.
            attention_mask (Tensor): (B, N), 1 for real tokens, 0 for padding.
            masked_input_ids (Tensor, optional): (B, N) token ids of E_m.
            masked_attention_mask (Tensor, optional): (B, N) mask of E_m; required with
                ``masked_input_ids`` or ``masked_text``.
            masked_text (Tensor, optional): (B, N, D) L_m computed beforehand.

        Returns:
            dict: ``visual`` (list of 4 Tensors (B, C_i, H / 2^(i+1), W / 2^(i+1)), i = 1..4:
            ``norm_i(V'_i)``), ``text`` (B, N, D) L'_4, ``text_mask`` (B, N) long (1 = real
            token), ``input_ids`` (B, N) and ``attention_mask`` (B, N) of E (for L_0 in the
            segmentor); with E_m also ``masked_text`` (B, N, D) L_m and ``masked_mask`` (B, N).
        """
        num = inputs.shape[0]
        if input_ids.shape[0] != num or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f'BidirectionalFeatureExtractor: {num} images but token ids '
                f'{tuple(input_ids.shape)} and attention mask {tuple(attention_mask.shape)}; '
                'expected one (N,) row of each per image.'
            )
        with_masked = masked_input_ids is not None or masked_text is not None
        if with_masked and masked_attention_mask is None:
            raise ValueError(
                'BidirectionalFeatureExtractor: masked_attention_mask is needed with the masked '
                'sentence E_m (masked_input_ids or masked_text).'
            )
        text_mask = attention_mask
        batched = masked_text is None and masked_input_ids is not None

        x, hw_shape = self._patch_embed(inputs)
        # E (rows :num) and E_m (rows num:) go through each BERT stage as one batch: at 20
        # tokens a BERT layer costs about the reading of its weights, so two sentences cost
        # little more than one. Only E's rows pass through the BSCs.
        if batched:
            text_mask = torch.cat([attention_mask, masked_attention_mask])
            text = self.text_encoder.embed(torch.cat([input_ids, masked_input_ids]))
        else:
            text = self.text_encoder.embed(input_ids)
        outs = []
        for i, stage in enumerate(self.vision.stages):
            for block in stage.blocks:
                x = block(x, hw_shape)
            text = self.text_encoder.forward_stage(i, text, text_mask)
            b, _, c = x.shape
            if not isinstance(self.bsc[i], nn.Identity):
                visual = x.transpose(1, 2).reshape(b, c, *hw_shape)
                visual, fused = self.bsc[i](visual, text[:num], attention_mask)
                text = torch.cat([fused, text[num:]]) if batched else fused
                # Back to Swin's (B, HW, C). BSC returns V' channels-last, so this is a view;
                # .contiguous() only guards against a strided view slowing every next block.
                x = visual.flatten(2).transpose(1, 2).contiguous()
            out = getattr(self.vision, f'norm{i}')(x)
            outs.append(out.transpose(1, 2).reshape(b, c, *hw_shape).contiguous())
            if stage.downsample is not None:
                x, hw_shape = stage.downsample(x, hw_shape)

        feats = dict(
            visual=outs,
            text=text[:num],
            text_mask=attention_mask,
            input_ids=input_ids,
            attention_mask=attention_mask,
        )
        if with_masked:
            feats['masked_text'] = text[num:] if batched else masked_text
            feats['masked_mask'] = masked_attention_mask
        return feats
