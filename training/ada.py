"""Adaptive discriminator augmentation: the controller that tunes the augmentation probability p.

ADA paper (Karras et al. 2020), section 3: the overfitting heuristic r_t = E[sign(D(real))]
(eq. 1) is measured over a few training steps; p goes up when r_t exceeds the target (D is
too sure about the reals it has memorised) and down otherwise, by a fixed step sized so that
p can cross [0, 1] in `kimg` thousand images.
"""
import numpy as np
import torch


def ada_step(rt, target, batch_size, interval, kimg):
    """Change of p after `interval` steps of `batch_size` images that measured the heuristic rt."""
    return float(np.sign(rt - target)) * (batch_size * interval) / (kimg * 1000)


class AdaController:
    """Accumulates sign(D(real)) and, every `interval` steps, moves `augment_pipe.p` towards the target.

    Under torch.distributed (when initialised) the sums are all-reduced first, so every rank
    computes the same r_t and keeps the same p; `batch_size` is the global batch (all ranks).
    """

    def __init__(self,
        augment_pipe,                # Object with a scalar tensor `p` (an AugmentPipe); updated in place.
        batch_size,                  # Images per training step, summed over all ranks.
        target=0.6,                  # Target value of r_t = E[sign(D(real))].
        interval=4,                  # Steps between adjustments.
        kimg=500,                    # Thousands of images for p to go from 0 to 1.
    ):
        self.augment_pipe = augment_pipe
        self.batch_size = batch_size
        self.target = target
        self.interval = interval
        self.kimg = kimg
        self.rt = None               # r_t of the last completed interval (None before the first).
        self._steps = 0
        self._sums = None            # [sum of signs, count], on the logits' device

    def state_dict(self):
        """Position within the current interval, for resuming; p itself travels in the pipe's buffer."""
        return dict(steps=self._steps, sums=None if self._sums is None else self._sums.cpu(), rt=self.rt)

    def load_state_dict(self, state):
        self._steps = int(state['steps'])
        self._sums = None if state['sums'] is None else state['sums'].to(self.augment_pipe.p.device)
        self.rt = state['rt']

    def accumulate(self, real_logits):
        """Adds D's outputs on (augmented) real images; cheap, no host sync."""
        signs = real_logits.detach().flatten().sign().double()  # float64: exact counts, even from fp16 logits
        sums = torch.stack([signs.sum(), torch.tensor(signs.numel(), dtype=signs.dtype, device=signs.device)])
        self._sums = sums if self._sums is None else self._sums + sums

    def step(self):
        """Ends a training step; every `interval` steps adjusts p and returns r_t, else returns None."""
        self._steps += 1
        if self._steps % self.interval != 0:
            return None
        sums = self._sums
        if sums is None:  # every rank must still join the all-reduce
            sums = torch.zeros([2], dtype=torch.float64, device=self.augment_pipe.p.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sums = sums.to(self.augment_pipe.p.device)  # NCCL needs the GPU tensor; gloo takes CPU
            torch.distributed.all_reduce(sums)
        self._sums = None
        total, count = sums.tolist()
        if count == 0:  # no real images seen in this interval: nothing to measure
            return None
        self.rt = total / count
        p = float(self.augment_pipe.p) + ada_step(self.rt, self.target, self.batch_size, self.interval, self.kimg)
        self.augment_pipe.p.copy_(torch.as_tensor(min(max(p, 0.0), 1.0)))
        return self.rt
