# Shared runtime of every BTDNet config: registries, environment, logging, visualisation.
default_scope = 'mmseg'
custom_imports = dict(imports=['btdnet'], allow_failed_imports=False)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools/*.py switch to gloo where CUDA is absent
)
vis_backends = [dict(type='LocalVisBackend')]
# Add dict(type='TensorboardVisBackend') to vis_backends to follow training in TensorBoard.
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
custom_hooks = [
    # RNG states in checkpoints: `--resume` continues the random stream instead of replaying it.
    dict(type='RNGStateHook'),
    # work_dir/training_curves.png: loss and validation oIoU against iteration.
    dict(type='TrainingCurvesHook', metric='oIoU'),
]
