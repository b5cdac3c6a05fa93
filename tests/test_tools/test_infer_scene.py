"""tools/infer_scene.py and tools/dist_infer_scene.sh end to end on the tiny config: one scene, a
CSV, a 2-process torchrun run, a SIGKILLed run resumed, and the errors users see."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import free_port, load_tool
from geotiff import write_tif
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / 'configs' / 'btdnet' / 'btdnet_tiny_synthetic.py')
TOOL = str(ROOT / 'tools' / 'infer_scene.py')


def scene(path, height, width, seed=0, nodata_rows=0):
    """A uint16 UTM GeoTIFF (nodata 0 on the first ``nodata_rows`` rows)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(500, 3000, (3, height, width)).astype(np.uint16)
    data[:, :nodata_rows] = 0
    transform = from_origin(400000.0, 5000000.0, 1.0, 1.0)
    return write_tif(path, data, crs='EPSG:32631', transform=transform, nodata=0)


def env():
    # CPU processes on any machine: the torchrun test starts 2 of them, and the resume test
    # compares bytes across processes.
    return dict(
        os.environ,
        PYTHON=sys.executable,
        OMP_NUM_THREADS='1',
        PYTHONUNBUFFERED='1',
        PYTHONPATH=str(ROOT / 'projects'),
        CUDA_VISIBLE_DEVICES='',
    )


def run_tool(*args, timeout=600):
    return subprocess.run(
        [sys.executable, TOOL, *map(str, args)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=timeout,
    )


def test_one_scene_then_refusing_to_overwrite(tmp_path, tiny_checkpoint):
    path = scene(tmp_path / 'field.tif', 90, 100, nodata_rows=5)
    out = tmp_path / 'out'
    done = run_tool(path, 'the white storage tanks', TINY, tiny_checkpoint, '--out-dir', out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {
        'field_mask.tif',
        'field.gpkg',
        'field.geojson',
        'field.json',
    }
    summary = json.loads((out / 'field.json').read_text())
    assert summary['tiles']['run'] == 4 and summary['tile_size'] == [64, 64]
    assert summary['settings']['model']['checkpoint'] == tiny_checkpoint
    with rasterio.open(out / 'field_mask.tif') as f:
        mask = f.read(1)
        assert f.crs.to_epsg() == 32631 and f.shape == (90, 100)
    assert (mask[:5] == 255).all() and set(np.unique(mask[5:])) <= {0, 1}

    # Refused before the model loads: the missing checkpoint is never reached.
    again = run_tool(path, 'the white tanks', TINY, tmp_path / 'no.pth', '--out-dir', out)
    assert again.returncode == 1 and 'no.pth' not in again.stderr
    assert 'holds an earlier run for field' in again.stderr and '--overwrite' in again.stderr


@pytest.mark.parametrize(
    'args, message',
    [
        (['SCENE', '  ', TINY, 'CKPT'], 'the sentence is empty'),
        (['SCENE', 'the car', TINY, 'CKPT', '--bands', '1,2,4'], 'has 3 band(s), but --bands'),
        (['NOTRASTER', 'the car', TINY, 'CKPT'], 'not a raster'),
        (['SCENE', 'the car', TINY, 'CKPT', '--overlap', '0.7'], 'overlap: expected a fraction'),
        (['SCENE', 'the car', TINY], 'give SCENE "SENTENCE" CONFIG CHECKPOINT'),
    ],
)
def test_bad_input_is_named_before_the_model_loads(tmp_path, capsys, args, message):
    tool = load_tool('infer_scene.py')
    path = scene(tmp_path / 'small.tif', 40, 40)
    notes = tmp_path / 'notes.tif'
    notes.write_text('hello')
    names = dict(SCENE=path, NOTRASTER=str(notes), CKPT=str(tmp_path / 'no_such.pth'))
    argv = [names.get(a, a) for a in args] + ['--out-dir', str(tmp_path / 'o')]
    try:
        status = tool.main(argv)
    except SystemExit as exit_:  # argparse
        status = exit_.code
    err = capsys.readouterr().err
    assert status in (1, 2) and message in err
    assert 'no_such.pth' not in err  # the checkpoint was never opened


def test_csv_rows_with_a_bad_one(tmp_path, tiny_checkpoint):
    scene(tmp_path / 'a.tif', 70, 70, seed=1)
    scene(tmp_path / 'b.tif', 64, 90, seed=2)
    (tmp_path / 'scenes.csv').write_text(
        'image,sentence\na.tif,the red car\nb.tif,the grey roof\nmissing.tif,the tank\n'
    )
    out = tmp_path / 'out'
    result = run_tool(
        '--csv', tmp_path / 'scenes.csv', TINY, tiny_checkpoint, '--out-dir', out, '--no-progress'
    )
    assert result.returncode == 1, result.stderr[-3000:]
    with open(out / 'results.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [r['status'] for r in rows] == ['done', 'done', 'failed']
    assert 'missing.tif: no such raster file' in rows[2]['error']
    for row in rows[:2]:
        summary = json.loads((out / f'{row["stem"]}.json').read_text())
        assert summary['sentence'] == row['sentence'] and int(row['tiles_run']) >= 1
        assert (out / f'{row["stem"]}_mask.tif').is_file()


def test_torchrun_two_processes_share_the_rows(tmp_path, tiny_checkpoint):
    scene(tmp_path / 'a.tif', 64, 80, seed=3)
    scene(tmp_path / 'b.tif', 80, 64, seed=4)
    csv_path = tmp_path / 'scenes.csv'
    csv_path.write_text('image,sentence\na.tif,the red car\nb.tif,the grey roof\n')
    out = tmp_path / 'out'
    result = subprocess.run(
        [
            'bash',
            str(ROOT / 'tools' / 'dist_infer_scene.sh'),
            str(csv_path),
            TINY,
            tiny_checkpoint,
            '2',
            '--out-dir',
            str(out),
            '--no-progress',
        ],
        capture_output=True,
        text=True,
        env=dict(env(), PORT=str(free_port())),
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '[rank 0] a.tif' in result.stdout and '[rank 1] b.tif' in result.stdout
    with open(out / 'results.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(r['row'], r['status']) for r in rows] == [('0', 'done'), ('1', 'done')]
    for stem in ('0_a', '1_b'):
        assert (out / f'{stem}_mask.tif').is_file() and (out / f'{stem}.gpkg').is_file()


def test_killed_run_resumes_to_identical_files(tmp_path, tiny_checkpoint):
    # 64 columns x 256 rows: one tile per row, five strips.
    path = scene(tmp_path / 'long.tif', 256, 64, seed=5, nodata_rows=3)
    options = ['--save-score', '--cog', '--no-progress', '--batch-size', '1']
    sentence = 'the white storage tanks'
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    done = run_tool(path, sentence, TINY, tiny_checkpoint, '--out-dir', full, *options)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, TOOL, path, sentence, TINY, tiny_checkpoint, '--out-dir', str(killed)]
        + options,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(),
        cwd=ROOT,
        start_new_session=True,
    )
    seen = []
    for line in proc.stdout:  # kill on an event, not a timer: strip 2 of 5 is on disk
        seen.append(line)
        if 'strip 2/5 done' in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, ''.join(seen)[-3000:]
    state = json.loads((killed / 'long.state.json').read_text())
    assert 2 <= state['strips_done'] < 5 and not (killed / 'long.json').exists()

    other = run_tool(path, sentence, TINY, tiny_checkpoint, '--out-dir', killed, *options[:-2])
    assert other.returncode == 1 and '--resume' in other.stderr  # needs --resume (or overwrite)
    resumed = run_tool(
        path, sentence, TINY, tiny_checkpoint, '--out-dir', killed, '--resume', *options
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resuming after strip {state["strips_done"]}/5' in resumed.stdout
    for name in ('long_mask.tif', 'long_score.tif', 'long.gpkg', 'long.geojson'):
        assert (killed / name).read_bytes() == (full / name).read_bytes(), name
    expected = json.loads((full / 'long.json').read_text())
    summary = json.loads((killed / 'long.json').read_text())
    assert summary['resumed_from_strip'] == state['strips_done']
    for key in ('tiles', 'existence', 'polygons', 'settings', 'outputs', 'stretch'):
        assert summary[key] == expected[key], key
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in full.iterdir())
