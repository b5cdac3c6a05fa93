from .no_target_head import NoTargetHead
from .rephrase_head import RephraseHead
from .twin_stream_head import FgBgCrossEntropyLoss, TwinStreamHead

__all__ = ['FgBgCrossEntropyLoss', 'NoTargetHead', 'RephraseHead', 'TwinStreamHead']
