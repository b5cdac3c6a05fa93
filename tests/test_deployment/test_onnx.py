"""ONNX export of the tiny BTDNet and inference through ONNX Runtime: parity with PyTorch, the
saved tokenizer, the exportable forms of BSC and MSAttn, clear errors, the tools."""

import copy
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_tool
from mmengine.config import Config
from mmengine.registry import init_default_scope
from transformers import BertTokenizerFast

from btdnet.apis import SceneOptions, build_tile_predictor, infer_scene, inference_model, init_model
from btdnet.datasets.transforms.text import key_phrase_spans
from btdnet.deployment import (
    ExportError,
    ONNXRuntimeSegmentor,
    check_exportable,
    export_onnx,
    read_manifest,
)
from btdnet.deployment.onnx_export import GRAPH_INPUTS, _example_inputs, symbolic_batch_swin
from btdnet.models.layers import mci
from btdnet.models.layers.bsc import BidirectionalSpatialCorrelation
from btdnet.models.text_encoders import tokenize_referring

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')
CHECKPOINT = ROOT / 'tests' / 'fixtures' / 'tiny_reference.pth'
# Slide inference with the exported 64 x 64 graph: 2 x 2 crops of a 96 x 96 network input.
SLIDE = {
    'model.test_cfg': dict(mode='slide', crop_size=(64, 64), stride=(32, 32)),
    'test_pipeline.1.scale': (96, 96),
}
SENTENCES = ['the red car on the left', 'a large grey roof at the top right of the image']

init_default_scope('mmseg')


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The tiny model exported with its int8 copy (whole inference, with the prior)."""
    out = tmp_path_factory.mktemp('onnx') / 'tiny'
    manifest = export_onnx(TINY, str(CHECKPOINT), str(out), int8=True)
    return out, manifest


@pytest.fixture(scope='module')
def pytorch_model():
    return init_model(TINY, str(CHECKPOINT))


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    img = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp('img') / 'scene.png'
    cv2.imwrite(str(path), img)
    return path


def _tokens(model, texts, with_masked=True):
    samples = [dict(text=t, key_spans=[list(s) for s in key_phrase_spans(t)]) for t in texts]
    return model.tokenize(samples, with_masked=with_masked, device=torch.device('cpu'))


# ---------------------------------------------------------------- export and parity
def test_export_writes_a_checked_graph_tokenizer_and_manifest(exported):
    import onnx

    out, manifest = exported
    for name in ('model.onnx', 'model_int8.onnx', 'deploy.json', 'tokenizer.json', 'vocab.txt'):
        assert (out / name).is_file(), name
    onnx.checker.check_model(str(out / 'model.onnx'))
    graph = onnx.load(str(out / 'model.onnx')).graph
    names = [i.name for i in graph.input]
    assert names == [
        'image',
        'input_ids',
        'attention_mask',
        'masked_input_ids',
        'masked_attention_mask',
    ]
    batch_dims = [i.type.tensor_type.shape.dim[0] for i in graph.input]
    assert all(d.dim_param and not d.dim_value for d in batch_dims)  # the batch is dynamic
    out_dims = graph.output[0].type.tensor_type.shape.dim
    assert graph.output[0].name == 'seg_logits' and out_dims[0].dim_param
    assert out_dims[1].dim_value == 2  # [O_bg, O_fg]; (H/4, W/4) is checked by running it
    assert read_manifest(str(out)) == json.loads((out / 'deploy.json').read_text()) == manifest
    assert manifest['input_shape'] == [64, 64] and manifest['uses_prior']
    assert manifest['image']['mean'] == [123.675, 116.28, 103.53]
    assert manifest['parity_on_export']['fp32_max_abs_diff'] < 1e-4


def test_int8_leaves_the_text_encoder_in_float(exported):
    import onnx

    from btdnet.deployment.onnx_export import text_encoder_nodes

    out, manifest = exported
    fp32 = onnx.load(str(out / 'model.onnx'))
    int8 = onnx.load(str(out / 'model_int8.onnx'))
    text = text_encoder_nodes(fp32)
    assert len(text) >= 4  # the tiny BERT's layers: Q, K, V, output, FFN ...
    kept = {n.name for n in int8.graph.node if n.op_type in ('MatMul', 'Gemm')}
    assert set(text) <= kept  # not quantised
    quantised = [n for n in int8.graph.node if n.op_type == 'MatMulInteger']
    others = [n for n in fp32.graph.node if n.op_type in ('MatMul', 'Gemm')]
    assert quantised and len(quantised) <= len(others) - len(text)
    assert manifest['output_stride'] == 4  # no refiner in the tiny config


@pytest.mark.parametrize('batch', [1, 2])
def test_onnxruntime_logits_equal_pytorch(exported, pytorch_model, batch):
    ort_model = ONNXRuntimeSegmentor(str(exported[0]), Config.fromfile(TINY))
    image = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    tokens = _tokens(pytorch_model, (SENTENCES * 2)[:batch])
    with torch.no_grad():
        expected = pytorch_model._forward(image, text=tokens)
    got = ort_model.run_graph(image, tokens)
    assert got.shape == expected.shape == (batch, 2, 16, 16)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # The sentence matters in the graph too (the comparison above could fail).
    other = _tokens(pytorch_model, ['green trees along the road'] * batch)
    assert not torch.allclose(ort_model.run_graph(image, other), got, atol=1e-3)


def test_saved_tokenizer_reloads_and_gives_the_same_ids(exported, pytorch_model):
    saved = BertTokenizerFast.from_pretrained(str(exported[0]), local_files_only=True)
    encoder = pytorch_model.backbone.text_encoder
    texts = [*SENTENCES, 'Storage tanks, 3 of them: near the ROAD!', ' '.join(['ship'] * 40)]
    spans = [[list(s) for s in key_phrase_spans(t)] for t in texts]
    assert saved(texts)['input_ids'] == encoder.tokenizer(texts)['input_ids']
    ours = tokenize_referring(saved, texts, spans, max_length=20)
    theirs = encoder.tokenize(texts, spans, device='cpu')
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key
    assert not torch.equal(ours['masked_input_ids'], ours['input_ids'])  # spans were masked


def test_inference_model_gives_the_same_results_through_onnxruntime(exported, pytorch_model, scene):
    ort_model = init_model(TINY, str(exported[0]), backend='onnxruntime')
    assert isinstance(ort_model, ONNXRuntimeSegmentor)
    assert ort_model.dataset_meta == pytorch_model.dataset_meta  # kept in deploy.json
    ours = inference_model(ort_model, scene, SENTENCES)
    reference = inference_model(pytorch_model, scene, SENTENCES)
    for got, expected in zip(ours, reference, strict=True):
        assert got.pred_sem_seg.data.shape == expected.pred_sem_seg.data.shape == (1, 40, 56)
        torch.testing.assert_close(got.seg_logits.data, expected.seg_logits.data, atol=1e-4, rtol=0)
        margin = (expected.seg_logits.data[1] - expected.seg_logits.data[0]).abs()
        sure = margin > 1e-3  # pixels not on the decision boundary
        assert torch.equal(got.pred_sem_seg.data[0][sure], expected.pred_sem_seg.data[0][sure])
        assert got.fg_fraction == pytest.approx(expected.fg_fraction, abs=1e-3)
        assert got.text == expected.text and got.ori_shape == expected.ori_shape


def test_slide_inference_through_onnxruntime(exported, scene):
    pytorch_model = init_model(TINY, str(CHECKPOINT), cfg_options=SLIDE)
    ort_model = init_model(TINY, str(exported[0]), cfg_options=SLIDE, backend='onnxruntime')
    got = inference_model(ort_model, scene, SENTENCES[0])
    expected = inference_model(pytorch_model, scene, SENTENCES[0])
    assert got.img_shape == (96, 96) and got.seg_logits.data.shape == (2, 40, 56)
    torch.testing.assert_close(got.seg_logits.data, expected.seg_logits.data, atol=1e-4, rtol=0)


def test_graph_inputs_follow_the_prior():
    """Without the prior nothing reads E_m: the traced inputs leave it out."""
    cfg = Config.fromfile(TINY)
    cfg.model.decode_head.use_prior_knowledge = False
    inputs = _example_inputs(init_model(cfg), (64, 64))
    assert sorted(inputs) == ['attention_mask', 'image', 'input_ids']
    assert inputs['image'].shape == (2, 3, 64, 64) and inputs['input_ids'].shape == (2, 20)
    with_prior = _example_inputs(init_model(TINY), (64, 64))
    assert sorted(with_prior) == sorted(GRAPH_INPUTS)


def test_int8_model_runs_and_is_offered_as_a_backend(exported, scene):
    int8 = init_model(TINY, str(exported[0]), backend='onnxruntime-int8')
    assert int8.session._model_path.endswith('model_int8.onnx')
    result = inference_model(int8, scene, SENTENCES[0])
    assert result.seg_logits.data.shape == (2, 40, 56)
    # Agreement with fp32 on the reference model (measured on this scene: max |logit
    # difference| 0.098 of a 0.49 range, 84 % of the pixels alike; 0.10-0.30 and 74-99 % over
    # 8 scenes). Bounds with room for other CPUs, that a broken quantisation would not meet.
    fp32 = init_model(TINY, str(exported[0]), backend='onnxruntime')
    reference = inference_model(fp32, scene, SENTENCES[0])
    difference = (result.seg_logits.data - reference.seg_logits.data).abs().max()
    assert float(difference) < 0.25
    alike = (result.pred_sem_seg.data == reference.pred_sem_seg.data).float().mean()
    assert float(alike) > 0.75


def test_tile_predictor_protocol(exported, pytorch_model):
    ort_model = init_model(TINY, str(exported[0]), backend='onnxruntime')
    predictor = build_tile_predictor(ort_model)
    assert predictor.tile_size == (64, 64)
    tiles = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    logits = predictor(tiles, SENTENCES[0])
    assert logits.shape == (3, 2, 64, 64) and logits.dtype == np.float32
    # PyTorch on the same tiles: BGR -> RGB, normalised, tensor mode, resized to the tile.
    data = pytorch_model.data_preprocessor(
        dict(inputs=list(torch.from_numpy(tiles).permute(0, 3, 1, 2)))
    )
    tokens = {k: v.expand(3, -1) for k, v in _tokens(pytorch_model, SENTENCES[:1]).items()}
    with torch.no_grad():
        expected = pytorch_model._forward(data['inputs'], text=tokens)
    expected = F.interpolate(expected, size=(64, 64), mode='bilinear', align_corners=False)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4, rtol=0)
    torch_logits = build_tile_predictor(pytorch_model, 'pytorch')(tiles, SENTENCES[0])
    np.testing.assert_allclose(logits, torch_logits, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r'the graph was exported for 64 x 64 .* 96 x 96'):
        predictor(np.zeros((1, 96, 96, 3), np.uint8), SENTENCES[0])
    with pytest.raises(ValueError, match=r'uint8 tiles .* float32 \(3, 64, 64, 3\)'):
        predictor(tiles.astype(np.float32), SENTENCES[0])
    with pytest.raises(ValueError, match='sentence is empty'):
        predictor(tiles, '  ')
    # The backend named must be the model's; an ONNX graph takes only its export shape.
    with pytest.raises(ValueError, match=r"'onnxruntime' does not match the model \(BTDNet\)"):
        build_tile_predictor(pytorch_model, 'onnxruntime')
    with pytest.raises(ValueError, match=r"'pytorch' does not match .*ONNXRuntimeSegmentor"):
        build_tile_predictor(ort_model, 'pytorch')
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        build_tile_predictor(ort_model, 'tensorrt')
    with pytest.raises(ValueError, match=r'takes 64 x 64 tiles .* found tile size \(96, 96\)'):
        build_tile_predictor(ort_model, tile_size=(96, 96))


def test_scene_tool_runs_onnxruntime(exported, pytorch_model, tmp_path):
    """tools/infer_scene.py --backend onnxruntime: the scene's blended target probability equals
    the PyTorch checkpoint's, and the run records the backend."""
    import rasterio
    from geotiff import write_tif

    rng = np.random.default_rng(3)
    path = write_tif(tmp_path / 'scene.tif', rng.integers(0, 256, (3, 150, 170), dtype=np.uint8))
    tool = load_tool('infer_scene.py')
    args = [
        str(path),
        SENTENCES[0],
        TINY,
        str(exported[0]),
        '--backend',
        'onnxruntime',
        '--out-dir',
        str(tmp_path / 'ort'),
        '--save-score',
        '--device',
        'cpu',
        '--no-progress',
    ]
    assert tool.main(args) == 0
    summary = json.loads((tmp_path / 'ort' / 'scene.json').read_text())
    assert summary['settings']['model']['backend'] == 'onnxruntime'
    assert summary['tiles']['run'] == 12  # 64 px tiles, stride 48: 3 rows x 4 columns
    infer_scene(
        pytorch_model, str(path), SENTENCES[0], str(tmp_path / 'pt'), SceneOptions(save_score=True)
    )
    with (
        rasterio.open(tmp_path / 'ort' / 'scene_score.tif') as ort_score,
        rasterio.open(tmp_path / 'pt' / 'scene_score.tif') as pt_score,
    ):
        np.testing.assert_allclose(ort_score.read(1), pt_score.read(1), atol=1e-4, rtol=0)


def test_a_model_with_a_refiner_exports_with_full_resolution_logits(tmp_path, pytorch_model):
    config = tmp_path / 'refined.py'
    config.write_text(
        f"_base_ = [{TINY!r}]\nmodel = dict(refiner=dict(type='ImageGuidedRefiner', channels=8))\n"
    )
    model = init_model(str(config))
    model.load_state_dict(pytorch_model.state_dict(), strict=False)  # all but the refiner
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.refiner.parameters():  # a refiner that changes the logits
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    checkpoint = tmp_path / 'refined.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    export_onnx(str(config), str(checkpoint), str(tmp_path / 'out'))
    ort_model = ONNXRuntimeSegmentor(str(tmp_path / 'out'), Config.fromfile(str(config)))
    image = torch.randn(2, 3, 64, 64, generator=gen)
    tokens = _tokens(model, SENTENCES)
    with torch.no_grad():
        expected = model._forward(image, text=tokens)
        coarse = pytorch_model._forward(image, text=tokens)
    got = ort_model.run_graph(image, tokens)
    assert read_manifest(str(tmp_path / 'out'))['output_stride'] == 1
    assert got.shape == expected.shape == (2, 2, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    upsampled = F.interpolate(coarse, size=(64, 64), mode='bilinear', align_corners=False)
    assert not torch.allclose(got, upsampled, atol=1e-2)  # the refiner is in the graph


# ---------------------------------------------------------------- exportable forms
def test_bsc_export_forms_equal_the_inference_forms(monkeypatch):
    torch.manual_seed(0)
    bsc = BidirectionalSpatialCorrelation(16, 24).double().eval()
    visual, text = torch.randn(2, 16, 7, 9).double(), torch.randn(2, 6, 24).double()
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        expected = bsc(visual, text, mask)
        monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
        got = bsc(visual, text, mask)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_swin_windows_reversed_without_a_fixed_batch_give_the_same_output(pytorch_model):
    from mmseg.models.backbones.swin import ShiftWindowMSA

    image = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    tokens = _tokens(pytorch_model, SENTENCES[:1] * 3)
    with torch.no_grad():
        expected = pytorch_model._forward(image, text=tokens)
        with symbolic_batch_swin(pytorch_model):
            swins = [m for m in pytorch_model.modules() if isinstance(m, ShiftWindowMSA)]
            assert swins and all('window_reverse' in vars(m) for m in swins)
            got = pytorch_model._forward(image, text=tokens)
    assert not any('window_reverse' in vars(m) for m in swins)  # restored
    assert torch.equal(got, expected)


def test_ms_deform_attn_takes_grid_sample_when_exporting(monkeypatch):
    monkeypatch.setattr(mci, 'mmcv_has_cuda_ops', lambda: True)
    assert mci.select_ms_deform_attn_impl(torch.device('cuda')) == 'mmcv_cuda'
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert mci.select_ms_deform_attn_impl(torch.device('cuda')) == 'pytorch'
    calls = []
    for name in ('ms_deform_attn_gather', 'ms_deform_attn_pytorch'):
        real = getattr(mci, name)

        def spy(*args, real=real, name=name):
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(mci, name, spy)
    attn = mci.MSDeformAttn(16, num_heads=4, num_levels=1, num_points=2).eval()
    with torch.no_grad():
        attn(torch.randn(1, 16, 16), torch.rand(1, 16, 1, 2), [(4, 4)])
    assert calls == ['ms_deform_attn_pytorch']


# ---------------------------------------------------------------- errors
def test_a_config_that_cannot_export_fails_clearly_before_loading(tmp_path):
    missing = str(tmp_path / 'never_read.pth')  # the error must come before the checkpoint
    cfg = Config.fromfile(TINY)
    keep_ratio = copy.deepcopy(cfg)
    keep_ratio.test_pipeline[1] = dict(type='Resize', scale=(64, 64), keep_ratio=True)
    with pytest.raises(ExportError, match='keep_ratio=True.*one size.*slide'):
        export_onnx(keep_ratio, missing, str(tmp_path / 'out'))
    other = copy.deepcopy(cfg)
    other.model.type = 'EncoderDecoder'
    with pytest.raises(ExportError, match="'EncoderDecoder'; only 'BTDNet'"):
        export_onnx(other, missing, str(tmp_path / 'out'))
    with pytest.raises(ExportError, match=r'--shape \(96, 96\).*\(64, 64\)'):
        check_exportable(cfg, (96, 96))
    with pytest.raises(ExportError, match='opset 15 has no GridSample'):
        check_exportable(cfg, opset=15)
    mmpretrain = copy.deepcopy(cfg)
    mmpretrain.model.backbone.vision.type = 'mmpretrain.SwinTransformer'
    with pytest.raises(ExportError, match="window_reverse fixes the batch.*'SwinTransformer'"):
        check_exportable(mmpretrain)
    assert not (tmp_path / 'out').exists()


def test_a_folder_that_is_not_empty_is_refused_and_a_failure_leaves_nothing(exported, tmp_path):
    with pytest.raises(ExportError, match=r'not empty: the export would replace .*model\.onnx'):
        export_onnx(TINY, str(CHECKPOINT), str(exported[0]))
    mine = tmp_path / 'mine'  # a user's folder with files of the same names, but no model.onnx
    mine.mkdir()
    (mine / 'deploy.json').write_text('{"my": "settings"}')
    (mine / 'vocab.txt').write_text('my words')
    (mine / 'notes.md').write_text('my notes')
    expected = r'would replace deploy\.json, vocab\.txt and holds notes\.md; pass --overwrite'
    with pytest.raises(ExportError, match=expected):
        export_onnx(TINY, str(CHECKPOINT), str(mine))
    assert (mine / 'vocab.txt').read_text() == 'my words'
    # A checkpoint that is not one: a plain message, and no folder (empty or partial) behind.
    (tmp_path / 'notes.pth').write_text('not a checkpoint')
    tool = load_tool('deployment/pytorch2onnx.py')
    assert tool.main([TINY, str(tmp_path / 'notes.pth'), '--out', str(tmp_path / 'new')]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mine', 'notes.pth']


def test_manifest_version_and_keys_are_checked(exported, tmp_path):
    folder = tmp_path / 'copy'
    shutil.copytree(exported[0], folder)
    manifest = json.loads((folder / 'deploy.json').read_text())
    (folder / 'deploy.json').write_text(json.dumps(dict(manifest, version=2)))
    with pytest.raises(ValueError, match='manifest version 2; this btdnet reads version 1'):
        read_manifest(str(folder))
    del manifest['max_length']
    (folder / 'deploy.json').write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match='deploy.json lacks the key max_length'):
        init_model(TINY, str(folder), backend='onnxruntime')


def test_bad_model_folders_say_what_is_missing(tmp_path, exported):
    with pytest.raises(FileNotFoundError, match='found no folder'):
        init_model(TINY, str(tmp_path / 'nope'), backend='onnxruntime')
    with pytest.raises(FileNotFoundError, match='no deploy.json'):
        init_model(TINY, str(tmp_path), backend='onnxruntime')
    with pytest.raises(ValueError, match="backend must be one of .* found 'tensorrt'"):
        init_model(TINY, str(exported[0]), backend='tensorrt')


# ---------------------------------------------------------------- tools
def test_pytorch2onnx_tool_reports_an_unexportable_config(tmp_path, capsys):
    tool = load_tool('deployment/pytorch2onnx.py')
    argv = [TINY, str(CHECKPOINT), '--out', str(tmp_path / 'x'), '--shape', '96', '96']
    assert tool.main(argv) == 1
    assert 'error: ExportError' in capsys.readouterr().err


def test_infer_py_onnxruntime_backend_single_and_csv(tmp_path, exported, scene):
    infer = load_tool('infer.py')
    common = ['--config', TINY]
    for backend, ckpt in (('pytorch', CHECKPOINT), ('onnxruntime', exported[0])):
        backend_args = ['--checkpoint', str(ckpt), '--backend', backend]
        out = tmp_path / backend
        argv = [str(scene), SENTENCES[0], *common, *backend_args, '--out', str(out / 'm.png')]
        assert infer.main(argv) == 0
        (tmp_path / 'pairs.csv').write_text(f'image,sentence\n{scene},{SENTENCES[1]}\n')
        argv = ['--csv', str(tmp_path / 'pairs.csv'), '--out-dir', str(out / 'res')]
        assert infer.main([*argv, *common, *backend_args]) == 0
    for name in ('m.png', 'res/masks/0_scene.png'):
        ours = cv2.imread(str(tmp_path / 'onnxruntime' / name), cv2.IMREAD_UNCHANGED)
        theirs = cv2.imread(str(tmp_path / 'pytorch' / name), cv2.IMREAD_UNCHANGED)
        assert ours.shape == (40, 56) and (ours == theirs).mean() > 0.99, name
    with open(tmp_path / 'onnxruntime' / 'res' / 'results.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    assert not row['error'] and row['mask'].endswith('0_scene.png')


def test_verify_onnx_compares_the_backends_on_a_split(exported, synthetic_rrsis_root, capsys):
    tool = load_tool('deployment/verify_onnx.py')
    argv = [TINY, str(CHECKPOINT), str(exported[0]), '--data-root', str(synthetic_rrsis_root)]
    assert tool.main([*argv, '--threads', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(('py', 'on'))}
    assert set(rows) == {'pytorch', 'onnxruntime-fp32', 'onnxruntime-int8'}
    oiou, miou, mask_iou, worst, diff = (float(v) for v in rows['onnxruntime-fp32'])
    assert (oiou, miou) == tuple(float(v) for v in rows['pytorch'][:2])
    assert mask_iou >= 0.99 and diff < 1e-4
    assert tool.main([TINY, str(CHECKPOINT), str(synthetic_rrsis_root)]) == 1  # not an export
    assert 'no deploy.json' in capsys.readouterr().err


def test_benchmark_inference_checks_its_arguments_first(tmp_path):
    tool = load_tool('analysis_tools/benchmark_inference.py')
    args = tool.parse_args([TINY, '--random-init', '--work-dir', str(tmp_path)])
    args.backends = 'before,eager'
    with pytest.raises(SystemExit, match='--before-src DIR'):
        tool.main_parent(args)
    args.backends = 'eager,tensorrt'
    with pytest.raises(SystemExit, match=r"unknown \['tensorrt'\]"):
        tool.main_parent(args)
    assert not any(tmp_path.iterdir())  # nothing built or exported
