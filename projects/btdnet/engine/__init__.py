from .runtime import enable_amp, load_config

__all__ = ['enable_amp', 'load_config']
