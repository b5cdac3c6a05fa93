# Generalized referring segmentation in the gRefCOCO layout (GRES, CVPR 2023): a sentence may
# refer to no object (ann_id [-1] or no_target: true), one, or several (the mask is their union).
# Layout (as GRES / ReLA read it; see GRefCOCODataset for the alternatives, e.g. a .p pickle):
#   data/grefs/grefcoco/grefs(unc).json   data/grefs/grefcoco/instances.json
#   data/grefs/images/train2014/*.jpg     (file_name from the instances.json image entries)
# Splits: train, val, testA, testB (test_dataloader reads testA; for testB add
#   --cfg-options test_dataloader.dataset.split=testB).
# Validate it with: python tools/analysis_tools/check_dataset.py configs/_base_/datasets/grefs.py
# RRSISMetric adds gIoU, cIoU, N-acc and T-acc when a split has samples without target.
_base_ = './referring_512x512.py'
dataset_type = 'GRefCOCODataset'
data_root = 'data/grefs'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, split='testA'))
