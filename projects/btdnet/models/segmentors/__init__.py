from .btdnet import BTDNet

__all__ = ['BTDNet']
