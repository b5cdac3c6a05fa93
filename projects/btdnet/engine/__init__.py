from .optim_constructor import BTDNetOptimWrapperConstructor
from .runtime import enable_amp, load_config
from .training_curves_hook import TrainingCurvesHook

__all__ = ['BTDNetOptimWrapperConstructor', 'TrainingCurvesHook', 'enable_amp', 'load_config']
