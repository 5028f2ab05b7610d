"""AttnLRP / CP-LRP in tools/python/lrp_attn.py: the autograd implementation
(gradient x input with modified backward functions, as LXT computes it)
against the explicit numpy float64 one, and the properties docs/TRANSFORMERS.md
states: what conserves, what is absorbed and how much, where masks could
give NaN and do not, the zero-variance LayerNorm row.

    /usr/bin/python3 tests/python/test_attn.py
"""
import math
import os
import sys
import unittest

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "python"))
import lrp_attn as la  # noqa: E402

torch.set_num_threads(1)

# autograd (float64) against direct (float64): both evaluate the same
# formulas, so they differ only by rounding: different summation orders,
# and x * (W^T R/z) by division in one against a chain of products in the
# other.  Each value passes through about 10 layers of O(fan-in) sums, each
# adding a few units of u = 2^-53 = 1.1e-16 relative to the relevance scale,
# times the condition numbers of the denominators (|sum| against sum of |terms|),
# which for these random Gaussian nets are below about 1e2.  Measured: at
# most 1.6e-15 of the seed's magnitude over all configurations below.
# 1e-12 allows 10^3 of condition number and still catches any wrong rule
# (a wrong factor or a dropped term changes values at the 1e-2 level).
TOL64 = 1e-12

CONFIGS = [
    dict(kind="text"),                                        # pre-LN, GELU
    dict(kind="text", prenorm=False, pooler=True),            # BERT-like: post-LN, pooler tanh
    dict(kind="vit"),                                         # patch embedding + CLS token
    dict(kind="text", norm="rms", act="silu"),                # LLaMA-like norm and activation
    dict(kind="text", act="tanh", heads=4),
]
TOKENS = torch.tensor([[1, 5, 7, 9, 2, 3], [4, 4, 4, 1, 0, 2]])
PADDING = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 1, 0, 0, 0, 0]]).bool()


def inputs(kw):
    if kw["kind"] == "text":
        return TOKENS, PADDING
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return x, torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]]).bool()


def npmask(mk):
    return {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in mk.items()}


def rel_err(a, b, scale):
    return float(np.abs(a - b).max()) / scale


class AutogradEqualsDirect(unittest.TestCase):

    def test_all_tensors_float64(self):
        for kw in CONFIGS:
            m = la.make_model(seed=1, **kw)
            x, pad = inputs(kw)
            for rule in ("attnlrp", "cplrp"):
                for mk in (dict(), dict(causal=True), dict(key_padding_mask=pad)):
                    with self.subTest(cfg=kw, rule=rule, mask=list(mk)):
                        a = la.explain(m, x, rule=rule, **mk)
                        d = la.direct_lrp(m, x, rule=rule, **npmask(mk))
                        scale = float(np.abs(d["R"]["logits"]).max())
                        self.assertTrue(np.allclose(a["logits"], d["logits"], rtol=1e-13, atol=0))
                        common = set(a["R"]) & set(d["R"])
                        self.assertGreater(len(common), 20)
                        for k in sorted(common):
                            self.assertLess(rel_err(a["R"][k], d["R"][k], scale), TOL64, k)

    def test_lin_eps(self):
        # epsilon rule on every Linear (sign0_pos), both ways
        m = la.make_model(seed=2, kind="text")
        a = la.explain(m, TOKENS, rule="attnlrp", lin_eps=0.05)
        d = la.direct_lrp(m, TOKENS, rule="attnlrp", lin_eps=0.05)
        scale = float(np.abs(d["R"]["logits"]).max())
        self.assertLess(rel_err(a["tokens"], d["R"]["tokens"], scale), TOL64)
        z = la.explain(m, TOKENS, rule="attnlrp")
        self.assertGreater(rel_err(a["tokens"], z["tokens"], scale), 1e-4)   # eps mattered

    def test_float32_tracks_float64(self):
        # float32 autograd against float64: a sanity bound, not a verdict
        # (the oracle's bounds are the job of the C side): 2^-24 times the
        # depth and condition numbers of this net stays far below 1e-3.
        kw = dict(kind="text")
        m64 = la.make_model(seed=1, **kw)
        m32 = la.make_model(seed=1, dtype=torch.float32, **kw)
        for rule in ("attnlrp", "cplrp"):
            a = la.explain(m64, TOKENS, rule=rule)
            b = la.explain(m32, TOKENS, rule=rule)
            scale = float(np.abs(a["R"]["logits"]).max())
            self.assertLess(rel_err(a["tokens"], b["tokens"].astype(np.float64), scale), 1e-3)

    def test_multihead_attention_module(self):
        # SelfAttention.from_mha reproduces nn.MultiheadAttention (with padding)
        torch.manual_seed(0)
        mha = nn.MultiheadAttention(8, 2, batch_first=True).double().eval()
        att = la.SelfAttention.from_mha(mha)
        x = torch.randn(2, 5, 8, dtype=torch.float64)
        pad = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]).bool()
        ref, _ = mha(x, x, x, key_padding_mask=pad)
        out = att(x, mask=la.build_mask(2, 5, pad))
        self.assertLess(float((ref - out).abs().max()), 1e-13)


class Conservation(unittest.TestCase):

    def setUp(self):
        self.m = la.make_model(seed=4, kind="text")
        self.d = la.direct_lrp(self.m, TOKENS, rule="attnlrp", key_padding_mask=PADDING.numpy())

    def test_every_layer_balances(self):
        # sum R_in + absorbed = sum R_out, layer by layer (exact in real
        # arithmetic; float64 rounding only)
        for name, (rin, ab, rout) in self.d["audit"].items():
            scale = np.abs(rin).max() + np.abs(ab).max() + np.abs(rout).max()
            self.assertLess(float(np.abs(rin + ab - rout).max()) / scale, 1e-13, name)

    def test_conserving_layers_absorb_nothing(self):
        # residual adds, the bilinear products (uniform rule) and the
        # attention value product conserve exactly
        for name, (rin, ab, rout) in self.d["audit"].items():
            if name.endswith(("res1", "res2", "context", "scores")) or name == "h0":
                self.assertEqual(float(np.abs(ab).max()), 0.0, name)
                self.assertLess(float(np.abs(rin - rout).max()), 1e-13 * float(np.abs(rout).max() + 1e-300), name)

    def test_softmax_absorbed_closed_form(self):
        # docs: the softmax rule absorbs sum_j R_j (1 - x_j + xbar), xbar = sum_i s_i x_i,
        # over unmasked entries (x the pre-mask score)
        A = self.d["acts"]
        for b in range(len(self.m.blocks)):
            t = "b%d." % b
            S, s, RA = A[t + "scores"], A[t + "probs"], self.d["R"][t + "probs"]
            live = s > 0
            xbar = (s * np.where(live, S, 0)).sum(-1, keepdims=True)
            closed = np.where(live, RA * (1 - S + xbar), 0).reshape(S.shape[0], -1).sum(1)
            got = self.d["absorbed"][t + "softmax"]["softmax_bias"]
            self.assertLess(float(np.abs(closed - got).max()), 1e-12 * float(np.abs(got).max()))
            self.assertGreater(float(np.abs(got).max()), 1e-3)   # it is not negligible

    def test_layernorm_absorbed_is_bias_share(self):
        # docs: frozen-sigma LayerNorm absorbs exactly sum_k b_k R_k / y_k
        A = self.d["acts"]
        P = {k: v.detach().numpy() for k, v in self.m.named_parameters()}
        for b in range(len(self.m.blocks)):
            t = "b%d." % b
            for ln in ("ln1", "ln2"):
                y = A[t + ln]
                Rk = self.d["R"][t + ln]
                want = (P["blocks.%d.%s.bias" % (b, ln)] * Rk / y).reshape(y.shape[0], -1).sum(1)
                got = self.d["absorbed"][t + ln]["bias"]
                self.assertLess(float(np.abs(want - got).max()), 1e-12 * float(np.abs(got).max()), t + ln)

    def test_whole_net_without_biases(self):
        # with every bias zero (Linear, LayerNorm, positions), CP-LRP conserves
        # end to end; AttnLRP loses exactly the softmax terms, which the
        # autograd side reads as sum R_probs - sum R_scores per block
        m = la.make_model(seed=5, kind="text")
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n.endswith("bias") or n.startswith("pos."):
                    p.zero_()
        cp = la.explain(m, TOKENS, rule="cplrp")
        lg = cp["R"]["logits"].sum(1)
        self.assertLess(float(np.abs(cp["tokens"].sum(1) - lg).max()), 1e-12 * float(np.abs(lg).max()))
        at = la.explain(m, TOKENS, rule="attnlrp")
        soft = sum(at["R"]["b%d.probs" % b].reshape(2, -1).sum(1) - at["R"]["b%d.scores" % b].reshape(2, -1).sum(1)
                   for b in range(len(m.blocks)))
        self.assertGreater(float(np.abs(soft).max()), 1e-3 * float(np.abs(lg).max()))
        self.assertLess(float(np.abs(at["tokens"].sum(1) + soft - lg).max()), 1e-12 * float(np.abs(lg).max()))

    def test_cplrp_attention_weights_get_nothing(self):
        d = la.direct_lrp(self.m, TOKENS, rule="cplrp")
        a = la.explain(self.m, TOKENS, rule="cplrp")
        for b in range(len(self.m.blocks)):
            t = "b%d." % b
            self.assertEqual(float(np.abs(d["R"][t + "q"]).max()), 0.0)
            self.assertEqual(float(np.abs(d["R"][t + "k"]).max()), 0.0)
            self.assertNotIn(t + "q", a["R"])        # no gradient reaches Q, K at all
            ctx = a["R"][t + "context"].reshape(2, -1).sum(1)
            v = a["R"][t + "v"].reshape(2, -1).sum(1)
            self.assertLess(float(np.abs(ctx - v).max()), 1e-13 * float(np.abs(ctx).max()))


class Masks(unittest.TestCase):
    # token 0 of sample 0 may attend to nothing: a fully masked row
    def setUp(self):
        self.m = la.make_model(seed=6, kind="text")
        self.pad = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]]).bool()

    def full_row_mask(self):
        # causal plus padding of key 0 in sample 0: query 0 of sample 0 sees no key
        return torch.tensor([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]).bool()

    def test_no_nan_with_minus_inf_masks(self):
        for rule in ("attnlrp", "cplrp"):
            for mk in (dict(key_padding_mask=self.pad), dict(causal=True),
                       dict(causal=True, key_padding_mask=self.full_row_mask())):
                a = la.explain(self.m, TOKENS, rule=rule, **mk)
                d = la.direct_lrp(self.m, TOKENS, rule=rule, **npmask(mk))
                for k, v in list(a["R"].items()) + list(d["R"].items()):
                    self.assertTrue(np.isfinite(v).all(), (rule, list(mk), k))
                for name, (rin, ab, rout) in d["audit"].items():
                    self.assertTrue(np.isfinite(rin + ab + rout).all(), name)

    def test_fully_masked_row_is_zero_attention(self):
        mk = dict(causal=True, key_padding_mask=self.full_row_mask())
        a = la.explain(self.m, TOKENS, rule="attnlrp", **mk)
        P = a["R"]["b0.probs"]
        self.assertEqual(float(np.abs(P[0, :, 0]).max()), 0.0)
        self.assertEqual(float(np.abs(a["R"]["b0.context"][0, :, 0]).max()), 0.0)

    def test_naive_softmax_nan_where_predicted(self):
        # naive masked_fill(-inf) + softmax: -inf - (-inf) = NaN in the max
        # subtraction, on the fully masked row only, already in the forward
        mk = dict(causal=True, key_padding_mask=self.full_row_mask())
        tape = {}
        self.m(TOKENS, rule="attnlrp", tape=tape, safe_softmax=False, **mk)
        A = tape["b0.probs"].detach().numpy()
        self.assertTrue(np.isnan(A[0, :, 0]).all())
        self.assertTrue(np.isfinite(A[0, :, 1:]).all())
        self.assertTrue(np.isfinite(A[1]).all())
        # a finite mask value (finfo.min) is NaN-free but the "fully masked"
        # row then attends uniformly to every key
        tape = {}
        self.m(TOKENS, rule="attnlrp", tape=tape, safe_softmax=False,
               mask_value=torch.finfo(torch.float64).min, **mk)
        A = tape["b0.probs"].detach().numpy()
        self.assertTrue(np.allclose(A[0, :, 0], 1.0 / 6, rtol=0, atol=1e-15))

    def test_relevance_at_masked_logits_is_nan_where_predicted(self):
        # forming R_x = x (R - s sum R) at the masked logits x = S + mask:
        # -inf * 0 = NaN exactly at the masked scores of the first attention
        # the backward pass reaches (the last block), nowhere else there; the
        # NaN then spreads to every tensor below it
        d = la.direct_lrp(self.m, TOKENS, rule="attnlrp", key_padding_mask=self.pad.numpy(), safe=False)
        last = "b%d." % (len(self.m.blocks) - 1)
        R = d["R"][last + "scores"]
        masked = np.broadcast_to(self.pad.numpy()[:, None, None, :], R.shape)
        self.assertTrue(np.isnan(R[masked]).all())
        self.assertTrue(np.isfinite(R[~masked]).all())
        self.assertTrue(np.isfinite(d["R"][last + "probs"]).all())
        self.assertTrue(np.isnan(d["R"]["tokens"][0]).all())


class ZeroVarianceRow(unittest.TestCase):
    """x constant over the normalised axis: sigma = sqrt(eps), y = b."""

    def setUp(self):
        N = 8
        g = torch.Generator().manual_seed(7)
        self.ln = nn.LayerNorm(N, eps=1e-5).double()
        with torch.no_grad():
            self.ln.weight.copy_(1 + 0.3 * torch.randn(N, generator=g, dtype=torch.float64))
            self.ln.bias.copy_(0.5 + 0.1 * torch.randn(N, generator=g, dtype=torch.float64))
        self.c = 0.75                                    # N * c and c are exact: mu == c exactly
        self.gy = torch.randn(1, N, generator=g, dtype=torch.float64)

    def run_rule(self, rule):
        x = torch.full((1, 8), self.c, dtype=torch.float64, requires_grad=True)
        y = la.norm_forward(self.ln, x, rule)
        y.backward(self.gy)
        return x, y, x * x.grad

    def test_frozen_sigma(self):
        # (at zero variance d sigma / d x = 0, so freezing sigma changes
        # nothing on this row: the rule and the plain gradient agree here)
        x, y, Rx = self.run_rule("attnlrp")
        b, w = self.ln.bias.detach(), self.ln.weight.detach()
        self.assertTrue(torch.equal(y.detach()[0], b))                    # y = b exactly
        Ry = (y * self.gy).detach()
        # all of R_y is absorbed by the bias: the input total is 0 (to rounding)
        self.assertLess(float(Rx.sum().abs()), 1e-12 * float(Ry.abs().sum()))
        # but the cells are not 0: R_i = (c / sigma) (w_i g_i - mean(w g)), sigma = sqrt(eps)
        wg = w * self.gy[0]
        want = self.c / math.sqrt(1e-5) * (wg - wg.mean())
        self.assertLess(float((Rx.detach()[0] - want).abs().max()), 1e-12 * float(want.abs().max()))
        self.assertGreater(float(want.abs().max()), 10 * float(Ry.abs().max()))   # amplified by c/sqrt(eps)

    def test_rms_zero_row(self):
        rms = la.RMSNorm(8, eps=1e-6).double()
        x = torch.zeros(1, 8, dtype=torch.float64, requires_grad=True)
        y = la.norm_forward(rms, x, "attnlrp")
        y.backward(self.gy)
        self.assertTrue(torch.isfinite(x.grad).all())
        self.assertEqual(float((x * x.grad).abs().max()), 0.0)

    def test_plain_gradient_through_layernorm_loses_relevance(self):
        # without the rule (sigma differentiated) the layer is scale-invariant
        # up to eps: x . grad = sum (y - b) g * eps / (var + eps): nearly nothing
        # reaches the input on a normal row
        g = torch.Generator().manual_seed(8)
        x = torch.randn(1, 8, generator=g, dtype=torch.float64, requires_grad=True)
        y = la.norm_forward(self.ln, x, None)
        y.backward(self.gy)
        lost = float((x * x.grad).sum())
        kept = float(((y - self.ln.bias) * self.gy).sum())
        var = float(x.detach().var(unbiased=False))
        self.assertLess(abs(lost - kept * 1e-5 / (var + 1e-5)), 1e-12 * abs(kept))


class IdentityRule(unittest.TestCase):

    def test_exact_and_lxt_ratio(self):
        for act in (nn.GELU(), nn.SiLU(), nn.Tanh()):
            x = torch.tensor([0.0, -1e-10, 1e-3, -2.0, 3.0], dtype=torch.float32, requires_grad=True)
            y = la.act_forward(act, x, "attnlrp")
            y.backward(torch.ones_like(y))
            self.assertTrue(torch.isfinite(x.grad).all())
            self.assertTrue(torch.allclose(x * x.grad, y, rtol=1e-6, atol=0))          # R_x = R_y
            self.assertEqual(float(x.grad[0]), la.ACT_D0[la.act_name(act)])
            # LXT's f(x) / (x + 1e-10): x = -1e-10 divides by zero
            x2 = x.detach().clone().requires_grad_(True)
            y2 = la.act_forward(act, x2, "attnlrp", act_eps=1e-10)
            y2.backward(torch.ones_like(y2))
            self.assertFalse(torch.isfinite(x2.grad[1]))
            self.assertTrue(torch.isfinite(x2.grad[[0, 2, 3, 4]]).all())


if __name__ == "__main__":
    # tests/test_python.c passes the build directory as an argument (the
    # other Python test files use it); these tests need no build
    unittest.main(argv=sys.argv[:1], verbosity=1)
