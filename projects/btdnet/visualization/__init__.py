from .referring_visualizer import (
    ReferringSegVisualizer,
    ReferringVisualizationHook,
    draw_referring_overlay,
    draw_sentence_masks,
    overlay_from_sample,
)

__all__ = [
    'ReferringSegVisualizer',
    'ReferringVisualizationHook',
    'draw_referring_overlay',
    'draw_sentence_masks',
    'overlay_from_sample',
]
