from .bidirectional_extractor import BidirectionalFeatureExtractor

__all__ = ['BidirectionalFeatureExtractor']
