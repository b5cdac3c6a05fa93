"""End to end on the tiny config and the synthetic dataset: tools/test.py and tools/infer.py write
what they promise, and the exported I / U agree with masks recomputed from the files."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import load_tool
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')


def data_options(root) -> list:
    return [
        '--cfg-options',
        f'test_dataloader.dataset.data_root={root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
    ]


@pytest.fixture(scope='module')
def test_split(synthetic_rrsis_root):
    """The synthetic test split with the test pipeline: sample_id -> (img_path, 0/1 gt mask)."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY).test_dataloader.dataset
    cfg.data_root = str(synthetic_rrsis_root)
    dataset = DATASETS.build(cfg)
    samples = {}
    for k in range(len(dataset)):
        sample = dataset[k]['data_samples']
        samples[sample.sample_id] = (sample.img_path, sample.gt_sem_seg.data[0].numpy())
    return samples


def test_test_py_writes_masks_index_overlays_and_dump(
    tmp_path, synthetic_rrsis_root, tiny_checkpoint, test_split
):
    out, show, dump = tmp_path / 'out', tmp_path / 'show', tmp_path / 'dump.json'
    cmd = [
        sys.executable,
        str(ROOT / 'tools' / 'test.py'),
        TINY,
        str(tiny_checkpoint),
        '--work-dir',
        str(tmp_path / 'work'),
        '--out',
        str(out),
        '--show-dir',
        str(show),
        '--dump',
        str(dump),
        *data_options(synthetic_rrsis_root),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]

    with open(out / 'index.csv', newline='') as f:
        index = {row['sample_id']: row for row in csv.DictReader(f)}
    assert set(index) == set(test_split)
    total_i = total_u = 0
    for sample_id, (img_path, gt) in test_split.items():
        row = index[sample_id]
        assert row['img_path'] == img_path and row['text']
        mask = cv2.imread(str(out / row['mask']), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(img_path)
        assert mask.shape == image.shape[:2] == gt.shape  # original size
        assert set(np.unique(mask)) <= {0, 255}
        pred = mask > 0
        inter, union = int((pred & (gt > 0)).sum()), int((pred | (gt > 0)).sum())
        assert (int(row['I']), int(row['U'])) == (inter, union)
        assert float(row['fg_fraction']) == pytest.approx(pred.mean())
        total_i += inter
        total_u += union
        assert (show / f'{sample_id}.png').is_file()  # one overlay per sentence
    logged = re.search(r'Iter\(test\).*?oIoU: ([0-9.]+)', run.stdout)
    assert logged and float(logged.group(1)) == pytest.approx(100 * total_i / total_u, abs=1e-4)
    assert 'Pr@0.5' in run.stdout and 'per category' in run.stdout  # the tables
    records = json.loads(dump.read_text())
    assert {r['sample_id'] for r in records} == set(test_split)
    # The same command again would write into those outputs: refused before the model loads.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode != 0
    assert f'--out {out} is not empty' in again.stderr and '--overwrite' in again.stderr
    assert 'Loads checkpoint' not in again.stdout + again.stderr


def test_test_py_refuses_a_checkpoint_of_another_model(
    tmp_path, synthetic_rrsis_root, tiny_checkpoint, monkeypatch
):
    state = torch.load(tiny_checkpoint, weights_only=True)['state_dict']
    key = next(k for k in state if k.startswith('decode_head'))
    del state[key]
    torch.save(dict(state_dict=state), tmp_path / 'other.pth')
    test_tool = load_tool('test.py')
    argv = [
        'test.py',
        TINY,
        str(tmp_path / 'other.pth'),
        '--work-dir',
        str(tmp_path / 'w'),
        *data_options(synthetic_rrsis_root),
    ]
    monkeypatch.setattr(sys, 'argv', argv)
    with pytest.raises(ValueError, match=f'1 missing keys .*{re.escape(key)}'):
        test_tool.main()


def test_infer_py_single_image(tmp_path, tiny_checkpoint, test_split, capsys):
    infer = load_tool('infer.py')
    img_path = next(iter(test_split.values()))[0]
    argv = [
        img_path,
        'the red car on the left',
        '--config',
        TINY,
        '--checkpoint',
        str(tiny_checkpoint),
        '--out',
        str(tmp_path / 'm.png'),
        '--overlay',
        str(tmp_path / 'o.png'),
    ]
    assert infer.main(argv) == 0
    mask = cv2.imread(str(tmp_path / 'm.png'), cv2.IMREAD_UNCHANGED)
    assert mask.shape == cv2.imread(img_path).shape[:2]
    overlay = cv2.imread(str(tmp_path / 'o.png'))
    assert overlay.shape[1] >= mask.shape[1] and overlay.shape[0] > mask.shape[0]  # + banner
    printed = capsys.readouterr().out
    assert f'target pixels: {int((mask > 0).sum())} of {mask.size}' in printed


def test_infer_py_batch_csv_with_a_bad_row(tmp_path, tiny_checkpoint, test_split):
    infer = load_tool('infer.py')
    img_path = next(iter(test_split.values()))[0]
    (tmp_path / 'pairs.csv').write_text(
        'image,sentence\n'
        f'{img_path},the red car\n'
        'missing.jpg,a car\n'
        f'{img_path},"the large roof, top right"\n'
    )
    argv = [
        '--csv',
        str(tmp_path / 'pairs.csv'),
        '--out-dir',
        str(tmp_path / 'res'),
        '--config',
        TINY,
        '--checkpoint',
        str(tiny_checkpoint),
    ]
    assert infer.main(argv) == 1  # one row failed, the others were done
    with open(tmp_path / 'res' / 'results.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['row'] for r in rows] == ['0', '1', '2']
    assert 'FileNotFoundError' in rows[1]['error'] and 'missing.jpg' in rows[1]['error']
    for row in (rows[0], rows[2]):
        assert not row['error']
        mask = cv2.imread(str(tmp_path / 'res' / row['mask']), cv2.IMREAD_UNCHANGED)
        assert int(row['fg_pixels']) == int((mask > 0).sum())
        assert (tmp_path / 'res' / row['overlay']).is_file()
    assert rows[2]['sentence'] == 'the large roof, top right'


def test_infer_py_bad_input_is_a_message_and_exit_status_1(
    tmp_path, tiny_checkpoint, test_split, capsys
):
    infer = load_tool('infer.py')
    img_path = next(iter(test_split.values()))[0]
    (tmp_path / 'notes.pth').write_text('not a checkpoint')
    # Checked before the model loads: each of these fails on its own problem, not on the
    # checkpoint (a text file here, which would fail at loading).
    bad_model = ['--config', TINY, '--checkpoint', str(tmp_path / 'notes.pth')]
    assert infer.main([str(tmp_path / 'nope.png'), 'a car', *bad_model]) == 1
    assert 'FileNotFoundError' in capsys.readouterr().err
    assert infer.main([img_path, '  ', *bad_model]) == 1
    assert 'the sentence is empty' in capsys.readouterr().err
    (tmp_path / 'pairs.csv').write_text('picture,text\na.png,a car\n')
    argv = ['--csv', str(tmp_path / 'pairs.csv'), '--out-dir', str(tmp_path / 'o')]
    assert infer.main([*argv, *bad_model]) == 1
    assert 'expected a header with the columns image,sentence' in capsys.readouterr().err
    (tmp_path / 'm.png').write_bytes(b'my own mask')
    assert infer.main([img_path, 'a car', *bad_model, '--out', str(tmp_path / 'm.png')]) == 1
    assert 'm.png; pass --overwrite' in capsys.readouterr().err
    assert (tmp_path / 'm.png').read_bytes() == b'my own mask'
    with pytest.raises(SystemExit):
        infer.main([img_path, 'a car', *bad_model, '--stretch', '2-98'])
    assert '--stretch: expected shared, per-band, none or MIN,MAX' in capsys.readouterr().err
    # Good input, bad checkpoint: one plain line.
    assert infer.main([img_path, 'a car', *bad_model]) == 1
    err = capsys.readouterr().err
    assert 'notes.pth is not a PyTorch checkpoint (a .pth file written by training)' in err
    assert 'Please file an issue' not in err


def test_infer_py_is_quiet_on_a_normal_run_and_a_truncation_still_says_so(
    tmp_path, tiny_checkpoint, test_split
):
    """No third-party warning or info line on a normal run (mmseg's build_loss deprecation,
    mmengine's checkpoint-backend line, ...); a sentence over the token budget prints one line."""
    import os

    img_path = next(iter(test_split.values()))[0]
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    common = ['--config', TINY, '--checkpoint', str(tiny_checkpoint)]
    long = ' '.join(['the small white car next to the road'] * 3)  # 26 tokens, 20 read
    outputs = []
    for k, sentence in enumerate(('the red car on the left', long)):
        cmd = [sys.executable, str(ROOT / 'tools' / 'infer.py'), img_path, sentence, *common]
        cmd += ['--out', str(tmp_path / f'm{k}.png')]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(done)
    normal, truncated = outputs
    assert normal.stderr == ''
    assert normal.stdout.splitlines()[0].startswith('target pixels:')  # nothing before it
    assert truncated.stderr == ''
    said = [line for line in truncated.stdout.splitlines() if 'WARNING' in line]
    assert len(said) == 1 and 'sentence 0 has 26 tokens' in said[0] and 'truncated' in said[0]
