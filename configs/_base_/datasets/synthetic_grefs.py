# Synthetic generalized referring data in the gRefCOCO layout (sentences with no target, one, or
# several), for the CPU demo and tests. Generate it first (seeded, a few seconds):
#   python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_grefs \
#       --task generalized --format grefs
# Layout: data/synthetic_grefs/grefs/{grefs(unc).json,instances.json}, images/grefs/*.jpg
_base_ = './grefs.py'
data_root = 'data/synthetic_grefs'
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='grefs/grefs(unc).json',
        instances_file='grefs/instances.json',
        data_prefix=dict(img_path='images/grefs'),
    )
)
val_dataloader = train_dataloader
test_dataloader = dict(dataset=dict(train_dataloader['dataset'], split='test'))
