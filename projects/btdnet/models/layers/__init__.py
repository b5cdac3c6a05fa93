from .bsc import BidirectionalSpatialCorrelation

__all__ = ['BidirectionalSpatialCorrelation']
