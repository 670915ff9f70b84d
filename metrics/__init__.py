"""Quality metrics of generative image models, computed as the published StyleGAN2-ADA numbers were.

`metric_main` holds the registry (fid50k_full, kid50k_full, pr50k3_full, is50k, ppl2_wend, fd_dinov2_50k_full,
prdc_dinov2_50k_full, ...); `metric_utils` the shared machinery (feature statistics, on-disk cache);
`detectors` the Inception-v3, VGG16 and DINOv2 detectors (dinov2.py holds the ViT), which the projector and the
web app use too.
"""
