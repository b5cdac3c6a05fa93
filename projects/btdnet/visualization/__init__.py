from .referring_visualizer import (
    ReferringSegVisualizer,
    ReferringVisualizationHook,
    draw_referring_overlay,
    overlay_from_sample,
)

__all__ = [
    'ReferringSegVisualizer',
    'ReferringVisualizationHook',
    'draw_referring_overlay',
    'overlay_from_sample',
]
