"""check_dataset, browse_dataset and benchmark_pipeline on the synthetic dataset."""

import os
import pickle
import shutil
from pathlib import Path

from conftest import load_tool

CONFIGS = Path(__file__).resolve().parents[2] / 'configs' / '_base_' / 'datasets'


def test_check_dataset_ok_then_errors(synthetic_rrsis_root, tmp_path, capsys):
    check = load_tool('analysis_tools/check_dataset.py')
    config = str(CONFIGS / 'synthetic_rrsis.py')
    assert check.main([config, '--data-root', str(synthetic_rrsis_root), '--split', 'train']) == 0
    assert 'OK: 0 error(s)' in capsys.readouterr().out

    root = tmp_path / 'broken'
    shutil.copytree(synthetic_rrsis_root / 'rrsisd', root / 'rrsisd')
    shutil.copytree(synthetic_rrsis_root / 'images', root / 'images')
    with open(root / 'rrsisd' / 'refs(unc).p', 'rb') as f:
        refs = pickle.load(f)  # our own test file
    train = [r for r in refs if r['split'] == 'train']
    train[0]['sentences'][0]['raw'] = ' '.join(['word'] * 200)
    train[1]['sentences'][0]['raw'] = ''
    train[2]['sentences'][0]['sent_id'] = train[3]['sentences'][0]['sent_id']
    with open(root / 'rrsisd' / 'refs(unc).p', 'wb') as f:
        pickle.dump(refs, f)
    os.remove(root / 'images' / 'rrsisd' / 'JPEGImages' / '00000.jpg')
    assert check.main([config, '--data-root', str(root), '--split', 'train']) == 1
    out = capsys.readouterr().out
    assert 'ERROR unreadable or missing files' in out and '00000.jpg' in out
    assert 'ERROR duplicate sample ids: 1' in out
    assert 'warning empty sentences: 1' in out
    assert 'sentences over 20 words (truncated by the text encoder): 1' in out
    assert check.main([config, '--data-root', str(root), '--split', 'train']) == 1

    assert check.main([str(CONFIGS / 'refsegrs.py'), '--data-root', str(tmp_path)]) == 1
    assert 'cannot build the val dataset' in capsys.readouterr().out


def test_browse_dataset_writes_overlays(synthetic_rrsis_root, tmp_path):
    browse = load_tool('analysis_tools/browse_dataset.py')
    out = tmp_path / 'browse'
    browse.main(
        [
            str(CONFIGS / 'refsegrs.py'),
            '--data-root',
            str(synthetic_rrsis_root / 'refsegrs'),
            '--split',
            'test',
            '--num',
            '2',
            '--output-dir',
            str(out),
        ]
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == ['test_1.jpg', 'test_2.jpg']
    import cv2

    img = cv2.imread(str(out / files[0]))
    size = 96
    assert img.shape[1] == size and img.shape[0] > size  # the sentence band sits above


def test_benchmark_pipeline_reports_both_figures(synthetic_rrsis_root, capsys):
    bench = load_tool('analysis_tools/benchmark_pipeline.py')
    bench.main(
        [
            str(CONFIGS / 'synthetic_rrsis.py'),
            '--data-root',
            str(synthetic_rrsis_root),
            '--num',
            '4',
            '--rounds',
            '1',
        ]
    )
    out = capsys.readouterr().out
    assert 'floor (OpenCV decode + resize)' in out and 'pipeline / floor time' in out
