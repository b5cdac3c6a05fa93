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
from rasterio.warp import transform as transform_points

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
                rings = [np.asarray(ring, np.float64) for ring in geom['coordinates']]
                self._parts[cid] = PixelPolygon(
                    shapely.Polygon(rings[0], rings[1:]), int(pixels[label]), float(sums[label])
                )
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
                # Exact: the parts share pixel edges in integer coordinates. (GEOS's faster
                # coverage union needs matching vertices on shared edges, which the strips'
                # outlines do not have.)
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
        batch: int = 1000,
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
        self._queued = 0
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

    def _moved(self, geometries: np.ndarray, crs) -> np.ndarray:
        """CRS geometries reprojected to ``crs``, all coordinates in one call."""

        def move(coords: np.ndarray) -> np.ndarray:
            xs, ys = transform_points(self.crs, crs, coords[:, 0], coords[:, 1])
            return np.column_stack([xs, ys])

        return shapely.transform(geometries, move)

    def add(self, polygons: list[PixelPolygon]) -> list[shapely.Polygon]:
        """Queue polygons; returns the kept ones (after ``min_area`` and ``simplify``) in pixel
        coordinates, e.g. for drawing."""
        if not polygons:
            return []
        pixel = np.array([p.geometry for p in polygons], dtype=object)
        pixels = np.array([p.pixels for p in polygons], np.float64)
        scores = np.array([p.score for p in polygons], np.float64)
        if self.unit == 'px':
            areas = pixels
        elif self.crs.is_projected:
            areas = pixels * self._pixel_area
        else:
            if self._equal_area is None:
                raise RuntimeError('call set_equal_area_centre for a geographic CRS')
            areas = shapely.area(self._moved(self._to_crs(pixel), self._equal_area))
        keep = areas >= self.min_area
        pixel, scores, areas = pixel[keep], scores[keep], areas[keep]
        if self.simplify > 0:
            pixel = shapely.simplify(pixel, self.simplify, preserve_topology=True)
        self._pending.append((self._to_crs(pixel), scores, areas))
        self._queued += len(pixel)
        if self._queued >= self.batch:
            self._flush()
        return list(pixel)

    def _to_crs(self, geometries: np.ndarray) -> np.ndarray:
        a, b, d, e, c, f = self._matrix
        return shapely.transform(
            geometries, lambda xy: xy @ np.array([[a, d], [b, e]]) + np.array([c, f])
        )

    def _flush(self) -> None:
        if not self._queued and self._gpkg_started:
            return
        empty = np.array([], dtype=object)
        geoms = np.concatenate([g for g, _, _ in self._pending]) if self._pending else empty
        scores = np.concatenate([s for _, s, _ in self._pending]) if self._pending else empty
        areas = np.concatenate([a for _, _, a in self._pending]) if self._pending else empty
        fields = [
            scores.astype(np.float64),
            areas.astype(np.float64),
            np.array([self.sentence] * len(geoms), dtype=object),
        ]
        previous = pyogrio.get_gdal_config_option('OGR_CURRENT_DATE')
        pyogrio.set_gdal_config_options({'OGR_CURRENT_DATE': self.timestamp})
        with warnings.catch_warnings():
            # Without a CRS pyogrio warns that the file has none: the caller has said so once.
            warnings.filterwarnings('ignore', message="'crs' was not provided")
            try:
                pyogrio.raw.write(
                    self.gpkg_path,
                    np.array(shapely.to_wkb(geoms), dtype=object) if len(geoms) else empty,
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
        if self._geojson is not None and len(geoms):
            # RFC 7946: longitude / latitude, exterior rings counter-clockwise.
            lonlat = shapely.orient_polygons(self._moved(geoms, 'EPSG:4326'), exterior_cw=False)
            lonlat = shapely.transform(lonlat, lambda xy: np.round(xy, GEOJSON_DECIMALS))
            sentence = json.dumps(self.sentence)
            for text, score, area in zip(shapely.to_geojson(lonlat), scores, areas):
                self._geojson.write(
                    ('\n' if self._geojson_first else ',\n')
                    + f'{{"type": "Feature", "properties": {{"score": {float(score)!r}, '
                    f'"{self.field}": {float(area)!r}, "sentence": {sentence}}}, '
                    f'"geometry": {text}}}'
                )
                self._geojson_first = False
        self.count += len(geoms)
        self._pending, self._queued = [], 0

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
