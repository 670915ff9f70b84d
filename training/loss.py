"""StyleGAN2 training objectives (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", 2020).

Non-saturating logistic loss, R1 regularisation of the discriminator, path length
regularisation of the generator and style mixing, split into the lazy-regularisation phases of
the paper (appendix B): `Gmain`/`Dmain` run every minibatch, `Greg`/`Dreg` every few minibatches
with their loss multiplied by the interval, `Gboth`/`Dboth` do both at once.
"""
import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


# R1 regularisation (Mescheder et al. 2018, eq. 9; StyleGAN2 appendix B): squared gradient norm on reals.
def r1_penalty_from_logits(real_logits: torch.Tensor, real_img: torch.Tensor,
                           create_graph: bool = True) -> torch.Tensor:
    """Per-sample sum of squared gradients of real_logits.sum() w.r.t. real_img (which must require grad)."""
    with conv2d_gradfix.no_weight_gradients():
        grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img], create_graph=create_graph,
                                    only_inputs=True)[0]
    return grads.square().sum(dim=[1, 2, 3])


def r1_penalty(D, real_img: torch.Tensor, real_c: torch.Tensor, augment_pipe=None, create_graph: bool = False,
               force_fp32: bool = False) -> torch.Tensor:
    """The R1 penalty of D at `real_img` before the gamma/2 factor, one value per sample."""
    img = real_img.detach().requires_grad_(True)
    logits = D(augment_pipe(img) if augment_pipe is not None else img, real_c, force_fp32=force_fp32)
    return r1_penalty_from_logits(logits, img, create_graph=create_graph)


# Path length regularisation (StyleGAN2 section 3.2, eq. 4): |J_w^T y| for random images y, kept near its running mean.
def path_lengths(gen_img: torch.Tensor, gen_ws: torch.Tensor) -> torch.Tensor:
    """Per-sample |J_w^T y|, y ~ N(0, I) / sqrt(H * W) (the real height and width, so non-square images work)."""
    pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
    with conv2d_gradfix.no_weight_gradients():
        pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True,
                                       only_inputs=True)[0]
    return pl_grads.square().sum(2).mean(1).sqrt()


class StyleGAN2Loss:
    """Accumulates the gradients of one training phase for one minibatch chunk.

    `pl_mean` (the path length running mean) is kept here; see `update_pl_mean` for how it
    advances so that all processes of a multi-GPU run keep one value.
    """

    def __init__(self, device, G, D,
        augment_pipe        = None,   # Differentiable augmentation applied to every image D sees (ADA); None = off.
        r1_gamma            = 10,     # R1 regularisation weight gamma (the loss term is gamma / 2 * penalty).
        style_mixing_prob   = 0.9,    # Probability of mixing two latents in a generated batch.
        pl_weight           = 2,      # Path length regularisation weight; 0 = off.
        pl_batch_shrink     = 2,      # Path length batch = generated batch // this, to save compute.
        pl_decay            = 0.01,   # Decay of the path length running mean.
        pl_no_weight_grad   = False,  # Wrap the path length gradient in conv2d_gradfix.no_weight_gradients().
    ):
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_no_weight_grad = pl_no_weight_grad
        self.pl_mean = torch.zeros([], device=device)
        self.real_logits_observers = []  # Callables given D's logits on reals (e.g. the ADA controller's accumulate).
        self._pl_length_means = []  # Per-chunk batch means of this phase, folded into pl_mean by update_pl_mean().

    # Style mixing regularisation (StyleGAN paper section 3.1): a random layer switches to a second latent.
    def run_G(self, z, c, update_emas=True):
        ws = self.G.mapping(z, c, skip_w_avg_update=not update_emas)
        if self.style_mixing_prob > 0:
            num_ws = ws.shape[1]
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob, cutoff,
                                 torch.full_like(cutoff, num_ws))
            mixed = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            layer = torch.arange(num_ws, device=ws.device).reshape(1, -1, 1)
            ws = torch.where(layer < cutoff, ws, mixed)
        img = self.G.synthesis(ws)
        return img, ws

    def run_D(self, img, c):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain=1):
        """Backpropagate the `phase` losses for one chunk, scaled by `gain`; returns the loss terms (detached).

        Gradients are averaged over processes by the training loop after all chunks.
        """
        assert phase in PHASES, phase
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight != 0
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
        terms = {}

        # Non-saturating logistic loss (Goodfellow et al. 2014), generator side: softplus(-D(G(z))).
        if do_Gmain:
            gen_img, _ = self.run_G(gen_z, gen_c)
            gen_logits = self.run_D(gen_img, gen_c)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Gmain = F.softplus(-gen_logits)
            training_stats.report("Loss/G/loss", loss_Gmain)
            loss_Gmain.mean().mul(gain).backward()
            terms["G/loss"] = loss_Gmain.detach().mean()

        # Path length regularisation, on a shrunk batch.
        if do_Gpl:
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
            with conv2d_gradfix.no_weight_gradients(self.pl_no_weight_grad):
                lengths = path_lengths(gen_img, gen_ws)
            training_stats.report("Loss/pl_penalty_lengths", lengths)
            # The mean used for this chunk includes the chunk itself, as in the original formulation.
            pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.pl_decay)
            self._pl_length_means.append(lengths.mean().detach())
            pl_penalty = (lengths - pl_mean).square()
            training_stats.report("Loss/pl_penalty", pl_penalty)
            loss_Gpl = pl_penalty * self.pl_weight
            training_stats.report("Loss/G/reg", loss_Gpl)
            # The zero-weighted image term keeps every synthesis parameter in the graph (no unused-parameter errors).
            (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()
            terms["G/reg"] = loss_Gpl.detach().mean()

        # Non-saturating logistic loss, discriminator side on fakes: softplus(D(G(z))).
        if do_Dmain:
            with torch.no_grad():
                gen_img, _ = self.run_G(gen_z, gen_c, update_emas=False)
            gen_logits = self.run_D(gen_img, gen_c)
            training_stats.report("Loss/scores/fake", gen_logits)
            training_stats.report("Loss/signs/fake", gen_logits.sign())
            loss_Dgen = F.softplus(gen_logits)
            loss_Dgen.mean().mul(gain).backward()
            terms["D/loss_fake"] = loss_Dgen.detach().mean()

        # Discriminator on reals: softplus(-D(x)), and R1 on the same forward pass when both are due.
        if do_Dmain or do_Dr1:
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c)
            training_stats.report("Loss/scores/real", real_logits)
            training_stats.report("Loss/signs/real", real_logits.sign())
            for observer in self.real_logits_observers:
                observer(real_logits.detach())
            loss = real_logits * 0
            if do_Dmain:
                loss_Dreal = F.softplus(-real_logits)
                training_stats.report("Loss/D/loss", loss_Dgen + loss_Dreal)
                terms["D/loss"] = terms.pop("D/loss_fake") + loss_Dreal.detach().mean()
                loss = loss + loss_Dreal
            if do_Dr1:
                penalty = r1_penalty_from_logits(real_logits, real_img_tmp)
                training_stats.report("Loss/r1_penalty", penalty)
                loss_Dr1 = penalty * (self.r1_gamma / 2)
                training_stats.report("Loss/D/reg", loss_Dr1)
                terms["D/reg"] = loss_Dr1.detach().mean()
                loss = loss + loss_Dr1.unsqueeze(1)
            loss.mean().mul(gain).backward()
        return terms

    def update_pl_mean(self, all_reduce_mean=None):
        """Advance the path length running mean once per Greg phase, by the mean over its chunks.

        `all_reduce_mean(t)` averages a tensor over processes; with it every process ends the phase
        with the same pl_mean, whatever split of the batch it computed.
        """
        if not self._pl_length_means:
            return
        batch_mean = torch.stack(self._pl_length_means).mean()
        if all_reduce_mean is not None:
            batch_mean = all_reduce_mean(batch_mean)
        self.pl_mean.copy_(self.pl_mean.lerp(batch_mean, self.pl_decay))
        self._pl_length_means = []
