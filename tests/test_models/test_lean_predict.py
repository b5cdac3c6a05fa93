"""The leaner predict path equals the one before it, and old checkpoints still load.

``tests/fixtures/tiny_reference.pth`` holds a tiny BTDNet saved by the code before the text left
the backbone, with the logits that code computed (whole, slide, without the prior); see
``tests/fixtures/make_tiny_reference.py``. Here today's code loads it strictly and must give the
same logits. The pieces of the lean path are also checked one by one against the full forward.
"""

import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope

from btdnet.apis import init_model
from btdnet.models.layers.mci import MCILayer, MultiScaleContextIntegration

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / 'tests' / 'fixtures'
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')

init_default_scope('mmseg')


def _load_maker():
    path = FIXTURES / 'make_tiny_reference.py'
    spec = importlib.util.spec_from_file_location('make_tiny_reference', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


maker = _load_maker()


# Tiny tensors: one intra-op thread is much faster than several on a shared CPU.
pytestmark = pytest.mark.usefixtures('one_intra_op_thread')


@pytest.fixture(scope='module')
def reference():
    return torch.load(FIXTURES / 'tiny_reference.pth', weights_only=True)


def _assert_same(got, expected):
    """Float tolerance: one thread then and now, but denormals may be flushed now."""
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_old_checkpoint_loads_strictly_and_predicts_as_before(reference):
    model = init_model(TINY, str(FIXTURES / 'tiny_reference.pth'), flush_denormal=False)
    state = model.state_dict()
    for key, value in reference['state_dict'].items():  # strict: every weight, as saved
        assert torch.equal(state[key], value.to(state[key].dtype)), key
    tensor, predict = maker.outputs(model, reference['inputs'])
    _assert_same(tensor, reference['expected']['tensor'])
    for got, expected in zip(predict, reference['expected']['predict'], strict=True):
        assert got.shape == expected.shape
        _assert_same(got, expected)


def test_slide_predict_equals_the_old_per_crop_path(reference):
    model = init_model(
        TINY,
        str(FIXTURES / 'tiny_reference.pth'),
        cfg_options={'model.test_cfg': maker.SLIDE},
        flush_denormal=False,
    )
    _, slide = maker.outputs(model, reference['inputs'])
    for got, expected in zip(slide, reference['expected']['slide'], strict=True):
        _assert_same(got, expected)


def test_no_prior_predict_skips_the_masked_sentence_and_equals_the_old_path(
    reference, tmp_path, monkeypatch
):
    state = {k: v for k, v in reference['state_dict'].items() if 'masked_text_proj' not in k}
    path = tmp_path / 'no_prior.pth'
    torch.save(dict(state_dict=state), path)
    model = init_model(
        TINY,
        str(path),
        cfg_options={'model.decode_head.use_prior_knowledge': False},
        flush_denormal=False,
    )
    seen = []
    forward = model.backbone.forward

    def spy(inputs, **text):
        seen.append(sorted(text))
        return forward(inputs, **text)

    monkeypatch.setattr(model.backbone, 'forward', spy)
    tensor, predict = maker.outputs(model, reference['inputs'])
    assert seen == [['attention_mask', 'input_ids']] * 2  # tensor mode, predict: no E_m
    _assert_same(tensor, reference['expected']['no_prior_tensor'])
    for got, expected in zip(predict, reference['expected']['no_prior_predict'], strict=True):
        _assert_same(got, expected)


def test_last_round_with_fewer_queries_equals_the_full_round_on_them():
    torch.manual_seed(0)
    shapes = [(8, 8), (4, 4), (2, 2)]
    layer = MCILayer(16, num_heads=4, num_levels=3, num_points=2).double().eval()
    num = sum(h * w for h, w in shapes)
    visual, text = torch.randn(2, num, 16).double(), torch.randn(2, 5, 16).double()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    ref = MultiScaleContextIntegration.reference_points(
        shapes, 2, 3, torch.device('cpu'), torch.float64
    )
    with torch.no_grad():
        full_v, full_t = layer(visual, text, mask, ref, shapes)
        lean_v, lean_t = layer(visual, text, mask, ref, shapes, num_queries=64)
    assert lean_v.shape == (2, 64, 16)
    torch.testing.assert_close(lean_v, full_v[:, :64], atol=1e-12, rtol=0)
    torch.testing.assert_close(lean_t, full_t, atol=1e-12, rtol=0)
