"""Deployment: ONNX export of BTDNet and inference through ONNX Runtime."""

from .onnx_export import ExportError, check_exportable, export_onnx, exported_shape
from .ort_segmentor import ONNXRuntimeSegmentor, read_manifest
from .parity import compare_backends

__all__ = [
    'ExportError',
    'ONNXRuntimeSegmentor',
    'check_exportable',
    'compare_backends',
    'export_onnx',
    'exported_shape',
    'read_manifest',
]
