from .bsc import BidirectionalSpatialCorrelation
from .mci import CrossAttention, MCILayer, MSDeformAttn, MultiScaleContextIntegration
from .refiner import ImageGuidedRefiner

__all__ = ['BidirectionalSpatialCorrelation']
__all__ += ['CrossAttention', 'MCILayer', 'MSDeformAttn', 'MultiScaleContextIntegration']
__all__ += ['ImageGuidedRefiner']
