"""A tiny mmengine Runner (linear model, 8 samples) for testing hooks and checkpointing."""

import torch
from mmengine.dataset import DefaultSampler
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner


class ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs).squeeze(1)
        if mode == 'loss':
            return dict(loss=((out - torch.stack(targets)) ** 2).mean())
        if mode == 'predict':
            return list(zip(out.detach(), targets))
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        g = torch.Generator().manual_seed(idx)
        return dict(inputs=torch.randn(2, generator=g), targets=torch.tensor(float(idx)))


class ToyMetric(BaseMetric):
    """``oIoU`` stand-in: 1 / (1 + mean squared error)."""

    def process(self, data_batch, data_samples):
        self.results.extend(float((p - t) ** 2) for p, t in data_samples)

    def compute_metrics(self, results):
        return dict(oIoU=1.0 / (1.0 + sum(results) / len(results)))


def toy_runner(work_dir, max_iters, resume=False, val_interval=None, custom_hooks=None):
    loader = dict(
        dataset=ToyDataset(),
        sampler=dict(type=DefaultSampler, shuffle=True),
        batch_size=2,
        num_workers=0,
    )
    val = {}
    if val_interval:
        val = dict(
            val_dataloader=dict(loader, sampler=dict(type=DefaultSampler, shuffle=False)),
            val_evaluator=dict(type=ToyMetric),
            val_cfg=dict(),
        )
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='PolyLR', power=0.9, eta_min=0, end=max_iters, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=val_interval or 10**9),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmengine',
        **val,
    )
