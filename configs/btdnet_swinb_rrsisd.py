# BTDNet, the paper's model on RRSIS-D (Table II: test oIoU 79.23 / mIoU 66.04): Swin-B (22k,
# window 12) + BERT-base, 512x512, 50 epochs, batch 8 = 2 per GPU x 4 GPUs.
#   tools/dist_train.sh configs/btdnet_swinb_rrsisd.py 4
# Needs the local weights named in _base_/models/btdnet_swinb.py (pretrain/...).
_base_ = [
    './_base_/models/btdnet_swinb.py',
    './_base_/datasets/rrsisd.py',
    './_base_/default_runtime.py',
    './_base_/schedules/schedule_50e.py',
]
