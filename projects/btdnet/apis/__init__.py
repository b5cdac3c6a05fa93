from .inference import (
    BACKENDS,
    CheckpointMismatchError,
    flush_denormals_on_cpu,
    inference_model,
    init_model,
    load_checkpoint_strict,
    read_image,
    read_image_header,
    read_pairs_csv,
    to_bgr_uint8,
    truncated_sentences,
)
from .raster import RasterScene, write_mask_geotiff
from .scene import SceneOptions, check_out_dir, infer_scene, scene_outputs
from .sentence_swap import (
    SWAP_SUBSETS,
    sentence_swap_controls,
    swap_records,
    swap_scores,
    swap_targets,
)
from .tiled import (
    SegmentorTilePredictor,
    TileGrid,
    TilePredictor,
    build_tile_predictor,
    predict_tiled,
)

__all__ = [
    'BACKENDS',
    'SWAP_SUBSETS',
    'CheckpointMismatchError',
    'flush_denormals_on_cpu',
    'RasterScene',
    'SceneOptions',
    'TileGrid',
    'TilePredictor',
    'SegmentorTilePredictor',
    'build_tile_predictor',
    'check_out_dir',
    'infer_scene',
    'inference_model',
    'init_model',
    'load_checkpoint_strict',
    'predict_tiled',
    'read_image',
    'read_image_header',
    'read_pairs_csv',
    'scene_outputs',
    'sentence_swap_controls',
    'swap_records',
    'swap_scores',
    'swap_targets',
    'to_bgr_uint8',
    'truncated_sentences',
    'write_mask_geotiff',
]
