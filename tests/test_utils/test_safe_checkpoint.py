"""Runner checkpoints round-trip with weights_only=True; foreign globals are refused."""

import os
import os.path as osp
import zipfile

import pytest
import torch
from mmengine.runner import CheckpointLoader
from toy_runner import toy_runner

import btdnet  # noqa: F401  (registers the safe globals and the checkpoint loader)
from btdnet.utils import UnsafeCheckpointError, load_local_checkpoint


def test_runner_checkpoint_resumes_with_weights_only(tmp_path):
    runner = toy_runner(tmp_path, max_iters=4)
    runner.train()
    ckpt = tmp_path / 'iter_4.pth'
    assert ckpt.is_file()

    # Every global in the file is allow-listed; the pickle never names getattr.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(ckpt)) == []
    with zipfile.ZipFile(ckpt) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in pickled
    assert b'getattr' not in pickled

    # torch's own default (weights_only=True) now loads it, history intact.
    state = torch.load(str(ckpt))
    loss_history = state['message_hub']['log_scalars']['train/loss']
    assert len(loss_history.data[0]) == 4
    assert loss_history.mean() == pytest.approx(float(loss_history.data[0].mean()))

    resumed = toy_runner(tmp_path, max_iters=6, resume=True)
    resumed.train()
    assert resumed.iter == 6
    hub = resumed.message_hub.get_scalar('train/loss')
    assert len(hub.data[0]) == 6  # 4 resumed values + 2 new ones


def test_checkpoint_with_foreign_global_is_refused(tmp_path):
    marker = tmp_path / 'pwned'

    class Payload:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    path = tmp_path / 'hostile.pth'
    torch.save({'state_dict': {}, 'meta': Payload()}, str(path))
    with pytest.raises(UnsafeCheckpointError) as err:
        CheckpointLoader.load_checkpoint(str(path))
    assert str(path) in str(err.value)
    assert 'system' in str(err.value)
    assert not marker.exists()


def test_non_checkpoint_and_missing_file_fail_clearly(tmp_path, log_messages):
    for content in ('not a checkpoint', 'hello world', '{"a": 1}', ''):
        text = tmp_path / 'notes.pth'
        text.write_text(content)
        with pytest.raises(ValueError) as err:
            load_local_checkpoint(str(text))
        # The whole message: torch's own text ("Please file an issue ...") is not in it.
        assert str(err.value) == (
            f'{text} is not a PyTorch checkpoint (a .pth file written by training)'
        )
    assert any('weights_only=True) said' in m for m in log_messages)  # in the debug log
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_local_checkpoint(osp.join(tmp_path, 'missing.pth'))
