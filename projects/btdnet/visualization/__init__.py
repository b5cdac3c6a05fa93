from .referring_visualizer import (
    DRAW_PIXEL_BUDGET,
    ReferringSegVisualizer,
    ReferringVisualizationHook,
    draw_referring_overlay,
    draw_sentence_masks,
    enlargement,
    overlay_from_sample,
)

__all__ = [
    'DRAW_PIXEL_BUDGET',
    'ReferringSegVisualizer',
    'ReferringVisualizationHook',
    'draw_referring_overlay',
    'draw_sentence_masks',
    'enlargement',
    'overlay_from_sample',
]
