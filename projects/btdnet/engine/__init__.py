from .optim_constructor import BTDNetOptimWrapperConstructor
from .rng_state_hook import RNGStateHook
from .runtime import close_distributed, enable_amp, init_cpu_distributed, load_config
from .training_curves_hook import TrainingCurvesHook

__all__ = [
    'BTDNetOptimWrapperConstructor',
    'RNGStateHook',
    'TrainingCurvesHook',
    'close_distributed',
    'enable_amp',
    'init_cpu_distributed',
    'load_config',
]
