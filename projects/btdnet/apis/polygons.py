"""Polygons from a mask read strip by strip, written as GeoPackage and RFC 7946 GeoJSON.

A scene's mask is polygonised one strip of rows at a time (4-connected components): components
that touch a strip's last row stay open, are joined with those that continue them in the next
strip (a union-find over the rows the strips share), and are emitted as one polygon once nothing
below continues them. Geometry is built in pixel coordinates, where shared edges are exact, and
moved to the scene's CRS when written.

.. code:: python

    polygonizer = StripPolygonizer()
    with PolygonWriter('out.gpkg', 'out.geojson', crs=crs, transform=transform,
                       sentence='the white storage tanks') as writer:
        for y0, fg, prob in strips:                 # bool (n, W), float32 (n, W)
            writer.add(polygonizer.add_strip(fg, prob, y0))
        writer.add(polygonizer.finish())
"""

import json
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import shapes
from rasterio.warp import transform_geom
from shapely.affinity import affine_transform
from shapely.geometry import mapping, shape
from shapely.geometry.polygon import orient

GEOJSON_DECIMALS = 7  # ~1 cm in longitude / latitude


@dataclass
class PixelPolygon:
    """One connected target region: its outline in pixel coordinates (x = column, y = row, on
    pixel corners), its pixel count and the sum of the target probability over its pixels."""

    geometry: shapely.Polygon
    pixels: int
    prob_sum: float

    @property
    def score(self) -> float:
        """Mean target probability inside the polygon."""
        return self.prob_sum / self.pixels


class StripPolygonizer:
    """Polygonise a mask fed strip by strip, top to bottom (4-connectivity).

    Only the components that reach the current strip's last row are held between strips.
    """

    def __init__(self) -> None:
        self._parent: dict[int, int] = {}
        self._parts: dict[int, PixelPolygon] = {}  # component id -> its part in one strip
        self._last_row: np.ndarray | None = None  # component ids on the last row (-1: none)
        self._next_id = 0

    def _find(self, a: int) -> int:
        root = a
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[a] != root:
            self._parent[a], a = root, self._parent[a]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def add_strip(self, fg: np.ndarray, prob: np.ndarray, y0: int) -> list[PixelPolygon]:
        """Add rows [y0, y0 + n) and return the polygons they complete.

        Args:
            fg (np.ndarray): bool (n, W) target pixels.
            prob (np.ndarray): float (n, W) target probability (read where ``fg``).
            y0 (int): Scene row of the strip's first row.
        """
        num, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        base = self._next_id - 1  # local label l -> id base + l
        if num > 1:
            flat = labels.ravel()
            pixels = np.bincount(flat, minlength=num)
            sums = np.bincount(flat, weights=prob.ravel().astype(np.float64), minlength=num)
            for geom, value in shapes(
                labels, mask=fg, connectivity=4, transform=Affine.translation(0, y0)
            ):
                label = int(value)
                cid = base + label
                self._parent[cid] = cid
                self._parts[cid] = PixelPolygon(shape(geom), int(pixels[label]), float(sums[label]))
            self._next_id += num - 1
            top = labels[0]
            both = (top > 0) & (self._last_row >= 0) if self._last_row is not None else None
            if both is not None and both.any():
                pairs = np.unique(np.stack([self._last_row[both], base + top[both]]), axis=1)
                for a, b in pairs.T:
                    self._union(int(a), int(b))
            last = np.where(labels[-1] > 0, base + labels[-1], -1)
        else:
            last = np.full(fg.shape[1], -1, np.int64)
        self._last_row = last
        still_open = {self._find(int(c)) for c in np.unique(last[last >= 0])}
        return self._emit(still_open)

    def finish(self) -> list[PixelPolygon]:
        """The polygons still open after the last strip."""
        self._last_row = None
        return self._emit(set())

    def _emit(self, still_open: set) -> list[PixelPolygon]:
        groups: dict[int, list[int]] = {}
        for cid in sorted(self._parts):
            groups.setdefault(self._find(cid), []).append(cid)
        done = []
        for root in sorted(groups):
            if root in still_open:
                continue
            members = [self._parts.pop(cid) for cid in groups[root]]
            for cid in groups[root]:
                del self._parent[cid]
            geometry = members[0].geometry
            if len(members) > 1:
                geometry = shapely.union_all([m.geometry for m in members])
            done.append(
                PixelPolygon(
                    geometry,
                    sum(m.pixels for m in members),
                    sum(m.prob_sum for m in members),
                )
            )
        # Ids of open components stay; their parents were kept above.
        return done


def area_unit(crs) -> str:
    """``'m2'`` for a projected or geographic CRS, ``'px'`` without one."""
    return 'm2' if crs is not None and (crs.is_projected or crs.is_geographic) else 'px'


def describe_area(crs) -> str:
    """How :class:`PolygonWriter` reports areas for ``crs`` (for logs and summaries)."""
    if crs is None:
        return 'no CRS: area_px is the polygon pixel count'
    if crs.is_projected:
        unit, factor = crs.linear_units_factor
        return f'projected CRS ({unit}): area_m2 is the pixel count times the pixel area' + (
            '' if factor == 1 else f', converted from {unit} ({factor} m each)'
        )
    if crs.is_geographic:
        return (
            f'geographic CRS {crs.to_string()} (degrees): area_m2 is measured after projecting '
            'each polygon to a Lambert azimuthal equal-area projection centred on the scene'
        )
    return f'CRS {crs.to_string()} is neither projected nor geographic: area_px is the pixel count'


class PolygonWriter:
    """Write target polygons to a GeoPackage (scene CRS) and a GeoJSON (WGS84 lon/lat, RFC 7946).

    Each feature carries ``score`` (mean target probability inside it), its area (``area_m2``
    with a CRS, see :func:`describe_area`; ``area_px`` otherwise) and ``sentence``. Features are
    streamed to the files in batches, so memory does not grow with their number.

    Args:
        gpkg_path (str): GeoPackage to write (layer ``targets``).
        geojson_path (str, optional): GeoJSON to write; None skips it (needed for no CRS).
        crs: The scene's CRS, or None: polygons then stay in pixel coordinates (column, row).
        transform (Affine): Pixel -> CRS transform of the mask.
        sentence (str): Stored with every feature.
        min_area (float): Drop polygons smaller than this, in the area field's unit.
        simplify (float): Douglas-Peucker tolerance in pixels (topology kept); 0 keeps the pixel
            outlines.
        timestamp (str): ISO 8601 time recorded as the GeoPackage's ``last_change`` (GDAL would
            take the clock's; a fixed value makes the file reproducible).
        batch (int): Features per write.
    """

    def __init__(
        self,
        gpkg_path: str,
        geojson_path: str | None,
        *,
        crs,
        transform: Affine,
        sentence: str,
        min_area: float = 0.0,
        simplify: float = 0.0,
        timestamp: str = '2000-01-01T00:00:00.000Z',
        batch: int = 5000,
    ) -> None:
        self.gpkg_path, self.geojson_path = str(gpkg_path), geojson_path
        self.crs = CRS.from_user_input(crs) if crs is not None else None
        self.sentence, self.min_area, self.simplify = sentence, float(min_area), float(simplify)
        self.timestamp, self.batch = timestamp, int(batch)
        self.unit = area_unit(self.crs)
        self.field = f'area_{self.unit}'
        t = transform if self.crs is not None else Affine.identity()
        self._matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
        self._pixel_area = abs(t.a * t.e - t.b * t.d)
        self._equal_area = None
        if self.crs is not None and self.crs.is_projected:
            self._pixel_area *= self.crs.linear_units_factor[1] ** 2
        self._pending: list[tuple] = []
        self._gpkg_started = False
        self.count = 0
        self._geojson = None
        if geojson_path is not None:
            if self.crs is None:
                raise ValueError('a GeoJSON needs a CRS (RFC 7946 is longitude / latitude)')
            self._geojson = open(geojson_path, 'w', encoding='utf-8')
            self._geojson.write('{"type": "FeatureCollection", "features": [')
            self._geojson_first = True

    def set_equal_area_centre(self, lon: float, lat: float) -> None:
        """Centre of the equal-area projection used for areas in a geographic CRS."""
        self._equal_area = CRS.from_proj4(
            f'+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs'
        )

    def add(self, polygons: list[PixelPolygon]) -> list[shapely.Polygon]:
        """Queue polygons; returns the kept ones (after ``min_area`` and ``simplify``) in pixel
        coordinates, e.g. for drawing."""
        if not polygons:
            return []
        world = [affine_transform(p.geometry, self._matrix) for p in polygons]
        if self.unit == 'px':
            areas = [float(p.pixels) for p in polygons]
        elif self.crs.is_projected:
            areas = [p.pixels * self._pixel_area for p in polygons]
        else:
            if self._equal_area is None:
                raise RuntimeError('call set_equal_area_centre for a geographic CRS')
            moved = transform_geom(self.crs, self._equal_area, [mapping(g) for g in world])
            areas = [float(shape(g).area) for g in moved]
        kept = []
        for polygon, area in zip(polygons, areas):
            if area < self.min_area:
                continue
            geometry = polygon.geometry
            if self.simplify > 0:
                geometry = geometry.simplify(self.simplify, preserve_topology=True)
            kept.append(geometry)
            self._pending.append(
                (
                    affine_transform(geometry, self._matrix),
                    polygon.score,
                    area,
                )
            )
        if len(self._pending) >= self.batch:
            self._flush()
        return kept

    def _flush(self) -> None:
        if not self._pending and self._gpkg_started:
            return
        geoms = [g for g, _, _ in self._pending]
        fields = [
            np.array([s for _, s, _ in self._pending], np.float64),
            np.array([a for _, _, a in self._pending], np.float64),
            np.array([self.sentence] * len(self._pending), dtype=object),
        ]
        previous = pyogrio.get_gdal_config_option('OGR_CURRENT_DATE')
        pyogrio.set_gdal_config_options({'OGR_CURRENT_DATE': self.timestamp})
        with warnings.catch_warnings():
            # Without a CRS pyogrio warns that the file has none: the caller has said so once.
            warnings.filterwarnings('ignore', message="'crs' was not provided")
            try:
                pyogrio.raw.write(
                    self.gpkg_path,
                    np.array(shapely.to_wkb(geoms), dtype=object)
                    if geoms
                    else np.array([], dtype=object),
                    fields,
                    ['score', self.field, 'sentence'],
                    layer='targets',
                    driver='GPKG',
                    geometry_type='Polygon',
                    crs=self.crs.to_wkt() if self.crs is not None else None,
                    append=self._gpkg_started,
                )
            finally:
                pyogrio.set_gdal_config_options({'OGR_CURRENT_DATE': previous})
        self._gpkg_started = True
        if self._geojson is not None and geoms:
            lonlat = transform_geom(self.crs, 'EPSG:4326', [mapping(g) for g in geoms])
            for g, (_, score, area) in zip(lonlat, self._pending):
                feature = dict(
                    type='Feature',
                    properties={'score': score, self.field: area, 'sentence': self.sentence},
                    geometry=_rounded(mapping(orient(shape(g), sign=1.0))),
                )
                self._geojson.write(('\n' if self._geojson_first else ',\n') + json.dumps(feature))
                self._geojson_first = False
        self.count += len(self._pending)
        self._pending = []

    def close(self) -> int:
        """Write what is queued and close the files; returns the number of features."""
        self._flush()
        if self._geojson is not None:
            self._geojson.write('\n]}\n')
            self._geojson.close()
            self._geojson = None
        return self.count

    def abort(self) -> None:
        """Close without finishing (after an error); the files are left incomplete."""
        if self._geojson is not None:
            self._geojson.close()
            self._geojson = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _rounded(geometry: dict) -> dict:
    """A GeoJSON polygon mapping with coordinates rounded to :data:`GEOJSON_DECIMALS`."""
    rings = [
        [[round(x, GEOJSON_DECIMALS), round(y, GEOJSON_DECIMALS)] for x, y in ring]
        for ring in geometry['coordinates']
    ]
    return dict(type=geometry['type'], coordinates=rings)


def remove_if_exists(*paths: str) -> None:
    for path in paths:
        if path and os.path.lexists(path):
            os.remove(path)
