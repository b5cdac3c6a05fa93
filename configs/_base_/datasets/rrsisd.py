# RRSIS-D (Liu et al., RMSIN, CVPR 2024): 17,402 sentences, 20 categories, 800x800 JPEGs.
# Layout (as it ships; see docs/user_guides/dataset_prepare.md):
#   data/rrsisd/rrsisd/refs(unc).p   data/rrsisd/rrsisd/instances.json
#   data/rrsisd/images/rrsisd/JPEGImages/*.jpg
# Validate it with: python tools/analysis_tools/check_dataset.py configs/_base_/datasets/rrsisd.py
_base_ = './referring_512x512.py'
dataset_type = 'RRSISDDataset'
data_root = 'data/rrsisd'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
