# RefSegRS (Yuan et al., RRSIS, TGRS 2024): 4,420 sentences (2,172 / 413 / 1,817), 512x512 TIFs.
# Layout (as it ships; see docs/user_guides/dataset_prepare.md):
#   data/refsegrs/images/<id>.tif   data/refsegrs/masks/<id>.tif
#   data/refsegrs/output_phrase_{train,val,test}.txt   (lines `<id> <expression>`)
# Validate it with: python tools/analysis_tools/check_dataset.py configs/_base_/datasets/refsegrs.py
_base_ = './referring_512x512.py'
dataset_type = 'RefSegRSDataset'
data_root = 'data/refsegrs'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
