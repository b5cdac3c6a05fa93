# BTDNet for generalized referring at the paper's scale: sentences that name no object, one, or
# several (gRefCOCO / GRES, and generalized remote-sensing sets such as GRRSIS-D in the same
# layout). The paper's model and recipe (Swin-B + BERT-base, 512x512, 50 epochs, batch 8 = 2 per
# GPU x 4 GPUs) plus a no-target head (not in the paper) on the last MCI round's L* and V*; a
# sentence judged to name nothing gets an empty mask. RRSISMetric adds gIoU, cIoU, N-acc, T-acc.
#   tools/dist_train.sh configs/btdnet_swinb_grefs.py 4
# Needs the local weights named in _base_/models/btdnet_swinb.py (pretrain/...) and a
# gRefCOCO-layout set under data/grefs (configs/_base_/datasets/grefs.py says how it is laid out).
_base_ = [
    './_base_/models/btdnet_swinb.py',
    './_base_/datasets/grefs.py',
    './_base_/default_runtime.py',
    './_base_/schedules/schedule_50e.py',
]
model = dict(no_target_head=dict(type='NoTargetHead', in_channels=256, channels=256))
