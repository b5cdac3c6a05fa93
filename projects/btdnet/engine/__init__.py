from .optim_constructor import BTDNetOptimWrapperConstructor
from .runtime import enable_amp, load_config

__all__ = ['BTDNetOptimWrapperConstructor', 'enable_amp', 'load_config']
