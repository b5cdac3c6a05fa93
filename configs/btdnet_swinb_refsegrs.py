# BTDNet, the paper's model on RefSegRS (Table I: test oIoU 80.57 / mIoU 67.95): Swin-B (22k,
# window 12) + BERT-base, 512x512, 50 epochs, batch 8 = 2 per GPU x 4 GPUs.
#   tools/dist_train.sh configs/btdnet_swinb_refsegrs.py 4
# Needs the local weights named in _base_/models/btdnet_swinb.py (pretrain/...).
# The ablations of Tables V-VII (configs/btdnet/) start from this config.
_base_ = [
    './_base_/models/btdnet_swinb.py',
    './_base_/datasets/refsegrs.py',
    './_base_/default_runtime.py',
    './_base_/schedules/schedule_50e.py',
]
