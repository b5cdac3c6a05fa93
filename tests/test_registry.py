"""`import btdnet` registers every component into mmseg's registries (the scope configs use)."""

import importlib

import pytest
from mmseg.registry import (
    DATASETS,
    HOOKS,
    METRICS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    TRANSFORMS,
    VISUALIZERS,
)

EXPECTED = {
    MODELS: [
        'BTDNet',
        'BertTextEncoder',
        'BidirectionalFeatureExtractor',
        'BidirectionalSpatialCorrelation',
        'FgBgCrossEntropyLoss',
        'ImageGuidedRefiner',
        'MultiScaleContextIntegration',
        'ONNXRuntimeSegmentor',
        'NoTargetHead',
        'RephraseHead',
        'TwinStreamHead',
    ],
    DATASETS: ['GRefCOCODataset', 'RRSISDDataset', 'RefSegRSDataset'],
    TRANSFORMS: [
        'ExtractKeyPhraseSpans',
        'LoadRSImageFromFile',
        'LoadReferringMask',
        'PackReferringInputs',
        'RandomBlackBoxes',
    ],
    METRICS: ['RRSISMetric'],
    HOOKS: ['RNGStateHook', 'ReferringVisualizationHook', 'TrainingCurvesHook'],
    VISUALIZERS: ['ReferringSegVisualizer'],
    OPTIM_WRAPPER_CONSTRUCTORS: ['BTDNetOptimWrapperConstructor'],
}


@pytest.mark.parametrize('registry', list(EXPECTED), ids=lambda r: r.name)
def test_import_registers_into_mmseg(registry):
    importlib.import_module('btdnet')
    for name in EXPECTED[registry]:
        cls = registry.get(name)
        assert cls is not None, f'{name} is not in mmseg {registry.name}'
        assert cls.__module__.startswith('btdnet.'), f'{name} resolves to {cls.__module__}'
    ours = sorted(k for k, v in registry.module_dict.items() if v.__module__.startswith('btdnet.'))
    assert ours == sorted(EXPECTED[registry])
