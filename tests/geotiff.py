"""GeoTIFFs written for tests (tests/ is on pytest's path, like toy_runner.py)."""

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM = 'EPSG:32633'


def write_tif(path, bands: np.ndarray, crs=UTM, transform=None, nodata=None, **extra) -> str:
    """A tiled GeoTIFF of ``bands`` (C, H, W): 0.5 m UTM pixels unless ``transform`` says other.

    ``extra`` overrides any profile entry (``tiled=False``, another ``compress``, ...).
    """
    count, height, width = bands.shape
    profile = dict(
        driver='GTiff',
        height=height,
        width=width,
        count=count,
        dtype=bands.dtype.name,
        crs=crs,
        transform=transform or from_origin(500000.0, 4100000.0, 0.5, 0.5),
        nodata=nodata,
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress='deflate',
    )
    profile.update(extra)
    with rasterio.open(path, 'w', **profile) as dst:
        dst.write(bands)
    return str(path)
