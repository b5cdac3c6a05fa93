# Synthetic referring remote-sensing data in the RRSIS-D layout, for tests and the CPU demo.
# Generate it first (seeded, a few seconds):
#   python tools/dataset_converters/make_synthetic_rrsis.py data/synthetic_rrsis --format rrsisd
# The same scenes in the RefSegRS layout: add `--format both` and use refsegrs.py with
# data_root='data/synthetic_rrsis/refsegrs'.
_base_ = './referring_512x512.py'
dataset_type = 'RRSISDDataset'
data_root = 'data/synthetic_rrsis'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
