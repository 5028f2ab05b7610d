/*
 * naive_attn.c -- see naive_attn.h.  Every quantity is an MPFR number at
 * 256 bits; products and sums are formed term by term (no fused kernels,
 * no shared code with the library).
 */
#include "naive_attn.h"

#include <math.h>
#include <mpfr.h>
#include <stdlib.h>

#define P 256

typedef struct { mpfr_t v; } num;

static num *nums(int n)
{
    num *a = malloc((size_t)(n > 0 ? n : 1) * sizeof *a);
    for (int i = 0; i < n; i++) {
        mpfr_init2(a[i].v, P);
        mpfr_set_zero(a[i].v, 1);
    }
    return a;
}

static void nfree(num *a, int n)
{
    for (int i = 0; i < n; i++)
        mpfr_clear(a[i].v);
    free(a);
}

/* o = R / stab(z), sign0_pos; 0 when stab(z) is 0 */
static void quot(mpfr_t o, mpfr_srcptr R, mpfr_srcptr z, float eps)
{
    mpfr_t st;
    mpfr_init2(st, P);
    if (mpfr_sgn(z) < 0)
        mpfr_sub_d(st, z, (double)eps, MPFR_RNDN);
    else
        mpfr_add_d(st, z, (double)eps, MPFR_RNDN);
    if (mpfr_zero_p(st))
        mpfr_set_zero(o, 1);
    else
        mpfr_div(o, R, st, MPFR_RNDN);
    mpfr_clear(st);
}

void naive_mha(double *out, double *absb, double *absm, int T, int F, int h, float scale,
               int causal, float mask, const float *Win, const float *bin, const float *Wout,
               const float *bout, const float *x, const float *R, int cp, float eps,
               const float *pad)
{
    int d = F / h;
    num *qkv = nums(T * 3 * F), *S = nums(h * T * T), *X = nums(h * T * T), *A = nums(h * T * T);
    num *O = nums(T * F), *y = nums(T * F), *RO = nums(T * F), *RA = nums(h * T * T);
    num *RS = nums(h * T * T), *Rq = nums(T * 3 * F), *Rx = nums(T * F);
    mpfr_t t, u, sum, mx;
    mpfr_inits2(P, t, u, sum, mx, (mpfr_ptr)0);
#define MSK(i, j) ((causal && (j) > (i)) || (pad && pad[j] != 0.0f))
#define EXCL(i, j) (MSK(i, j) && isinf(mask))
    /* forward */
    for (int a = 0; a < T; a++)
        for (int o = 0; o < 3 * F; o++) {
            mpfr_set_d(qkv[a * 3 * F + o].v, bin ? (double)bin[o] : 0.0, MPFR_RNDN);
            for (int i = 0; i < F; i++) {
                mpfr_set_d(t, (double)x[a * F + i], MPFR_RNDN);
                mpfr_mul_d(t, t, (double)Win[o * F + i], MPFR_RNDN);
                mpfr_add(qkv[a * 3 * F + o].v, qkv[a * 3 * F + o].v, t, MPFR_RNDN);
            }
        }
    for (int hh = 0; hh < h; hh++)
        for (int i = 0; i < T; i++) {
            for (int j = 0; j < T; j++) {
                num *s = &S[(hh * T + i) * T + j];
                for (int k = 0; k < d; k++) {
                    mpfr_mul(t, qkv[i * 3 * F + hh * d + k].v, qkv[j * 3 * F + F + hh * d + k].v,
                             MPFR_RNDN);
                    mpfr_add(s->v, s->v, t, MPFR_RNDN);
                }
                mpfr_mul_d(s->v, s->v, (double)scale, MPFR_RNDN);
                mpfr_set(X[(hh * T + i) * T + j].v, s->v, MPFR_RNDN);
                if (MSK(i, j) && !isinf(mask))
                    mpfr_add_d(X[(hh * T + i) * T + j].v, s->v, (double)mask, MPFR_RNDN);
            }
            /* softmax over the visible keys */
            int first = 1;
            for (int j = 0; j < T; j++)
                if (!EXCL(i, j) && (first || mpfr_greater_p(X[(hh * T + i) * T + j].v, mx))) {
                    mpfr_set(mx, X[(hh * T + i) * T + j].v, MPFR_RNDN);
                    first = 0;
                }
            mpfr_set_zero(sum, 1);
            for (int j = 0; j < T; j++) {
                num *a = &A[(hh * T + i) * T + j];
                if (EXCL(i, j))
                    continue;
                mpfr_sub(t, X[(hh * T + i) * T + j].v, mx, MPFR_RNDN);
                mpfr_exp(a->v, t, MPFR_RNDN);
                mpfr_add(sum, sum, a->v, MPFR_RNDN);
            }
            for (int j = 0; j < T; j++) /* a row with no visible key stays 0 */
                if (!EXCL(i, j))
                    mpfr_div(A[(hh * T + i) * T + j].v, A[(hh * T + i) * T + j].v, sum, MPFR_RNDN);
        }
    for (int i = 0; i < T; i++)
        for (int hh = 0; hh < h; hh++)
            for (int p = 0; p < d; p++)
                for (int j = 0; j < T; j++) {
                    mpfr_mul(t, A[(hh * T + i) * T + j].v, qkv[j * 3 * F + 2 * F + hh * d + p].v,
                             MPFR_RNDN);
                    mpfr_add(O[i * F + hh * d + p].v, O[i * F + hh * d + p].v, t, MPFR_RNDN);
                }
    for (int i = 0; i < T; i++)
        for (int o = 0; o < F; o++) {
            mpfr_set_d(y[i * F + o].v, bout ? (double)bout[o] : 0.0, MPFR_RNDN);
            for (int p = 0; p < F; p++) {
                mpfr_mul_d(t, O[i * F + p].v, (double)Wout[o * F + p], MPFR_RNDN);
                mpfr_add(y[i * F + o].v, y[i * F + o].v, t, MPFR_RNDN);
            }
        }
    /* out projection: R_O(p) = sum_o O_p W_op R_o / stab(y_o) */
    for (int i = 0; i < T; i++)
        for (int o = 0; o < F; o++) {
            mpfr_set_d(u, (double)R[i * F + o], MPFR_RNDN);
            quot(u, u, y[i * F + o].v, eps);
            for (int p = 0; p < F; p++) {
                mpfr_mul_d(t, O[i * F + p].v, (double)Wout[o * F + p], MPFR_RNDN);
                mpfr_mul(t, t, u, MPFR_RNDN);
                mpfr_add(RO[i * F + p].v, RO[i * F + p].v, t, MPFR_RNDN);
            }
        }
    /* O = A v, per term t_ijp = A_ij v_jp R_O(ip) / stab(O_ip) */
    for (int hh = 0; hh < h; hh++)
        for (int i = 0; i < T; i++)
            for (int p = 0; p < d; p++) {
                int op = i * F + hh * d + p;
                quot(u, RO[op].v, O[op].v, eps);
                for (int j = 0; j < T; j++) {
                    mpfr_mul(t, A[(hh * T + i) * T + j].v, qkv[j * 3 * F + 2 * F + hh * d + p].v,
                             MPFR_RNDN);
                    mpfr_mul(t, t, u, MPFR_RNDN);
                    if (!cp) {
                        mpfr_div_2ui(t, t, 1, MPFR_RNDN);
                        mpfr_add(RA[(hh * T + i) * T + j].v, RA[(hh * T + i) * T + j].v, t,
                                 MPFR_RNDN);
                    }
                    int vi = j * 3 * F + 2 * F + hh * d + p;
                    mpfr_add(Rq[vi].v, Rq[vi].v, t, MPFR_RNDN);
                }
            }
    mpfr_t tb, tm;
    mpfr_inits2(P, tb, tm, (mpfr_ptr)0);
    mpfr_set_zero(tb, 1);
    mpfr_set_zero(tm, 1);
    if (!cp) {
        /* softmax Taylor at X read at S; bias term; mask share */
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < T; i++) {
                mpfr_t sR, xbar, bias, msk;
                mpfr_inits2(P, sR, xbar, bias, msk, (mpfr_ptr)0);
                mpfr_set_zero(sR, 1);
                mpfr_set_zero(xbar, 1);
                mpfr_set_zero(msk, 1);
                for (int j = 0; j < T; j++)
                    if (!EXCL(i, j)) {
                        int z = (hh * T + i) * T + j;
                        mpfr_add(sR, sR, RA[z].v, MPFR_RNDN);
                        mpfr_mul(t, A[z].v, X[z].v, MPFR_RNDN);
                        mpfr_add(xbar, xbar, t, MPFR_RNDN);
                    }
                mpfr_set_zero(bias, 1);
                for (int j = 0; j < T; j++) {
                    int z = (hh * T + i) * T + j;
                    if (EXCL(i, j))
                        continue;
                    mpfr_mul(t, A[z].v, sR, MPFR_RNDN);
                    mpfr_sub(t, RA[z].v, t, MPFR_RNDN); /* d */
                    mpfr_mul(RS[z].v, S[z].v, t, MPFR_RNDN);
                    mpfr_sub(u, X[z].v, S[z].v, MPFR_RNDN);
                    mpfr_mul(u, u, t, MPFR_RNDN);
                    mpfr_add(msk, msk, u, MPFR_RNDN);
                    /* R_j (1 - x_j + xbar) */
                    mpfr_ui_sub(u, 1, X[z].v, MPFR_RNDN);
                    mpfr_add(u, u, xbar, MPFR_RNDN);
                    mpfr_mul(u, u, RA[z].v, MPFR_RNDN);
                    mpfr_add(bias, bias, u, MPFR_RNDN);
                }
                mpfr_add(tb, tb, bias, MPFR_RNDN);
                mpfr_add(tm, tm, msk, MPFR_RNDN);
                mpfr_clears(sR, xbar, bias, msk, (mpfr_ptr)0);
            }
        /* S = c q k^T, per term c q_ik k_jk R_S(ij) / stab(S_ij), halves */
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    int z = (hh * T + i) * T + j;
                    quot(u, RS[z].v, S[z].v, eps);
                    for (int k = 0; k < d; k++) {
                        int qi = i * 3 * F + hh * d + k, ki = j * 3 * F + F + hh * d + k;
                        mpfr_mul(t, qkv[qi].v, qkv[ki].v, MPFR_RNDN);
                        mpfr_mul_d(t, t, (double)scale, MPFR_RNDN);
                        mpfr_mul(t, t, u, MPFR_RNDN);
                        mpfr_div_2ui(t, t, 1, MPFR_RNDN);
                        mpfr_add(Rq[qi].v, Rq[qi].v, t, MPFR_RNDN);
                        mpfr_add(Rq[ki].v, Rq[ki].v, t, MPFR_RNDN);
                    }
                }
    }
    /* in projection */
    for (int a = 0; a < T; a++)
        for (int o = 0; o < 3 * F; o++) {
            quot(u, Rq[a * 3 * F + o].v, qkv[a * 3 * F + o].v, eps);
            for (int i = 0; i < F; i++) {
                mpfr_set_d(t, (double)x[a * F + i], MPFR_RNDN);
                mpfr_mul_d(t, t, (double)Win[o * F + i], MPFR_RNDN);
                mpfr_mul(t, t, u, MPFR_RNDN);
                mpfr_add(Rx[a * F + i].v, Rx[a * F + i].v, t, MPFR_RNDN);
            }
        }
    for (int i = 0; i < T * F; i++)
        out[i] = mpfr_get_d(Rx[i].v, MPFR_RNDN);
    *absb = mpfr_get_d(tb, MPFR_RNDN);
    *absm = mpfr_get_d(tm, MPFR_RNDN);
    mpfr_clears(tb, tm, (mpfr_ptr)0);
#undef EXCL
#undef MSK
    mpfr_clears(t, u, sum, mx, (mpfr_ptr)0);
    nfree(qkv, T * 3 * F), nfree(S, h * T * T), nfree(X, h * T * T), nfree(A, h * T * T);
    nfree(O, T * F), nfree(y, T * F), nfree(RO, T * F), nfree(RA, h * T * T);
    nfree(RS, h * T * T), nfree(Rq, T * 3 * F), nfree(Rx, T * F);
}

void naive_softmax_gate(double *out, double *absb, int T, int F, const float *x, const double *R)
{
    mpfr_t mx, sum, e, sR, xbar, t, u, b;
    mpfr_inits2(P, mx, sum, e, sR, xbar, t, u, b, (mpfr_ptr)0);
    num *s = nums(F);
    for (int r = 0; r < T; r++) {
        const float *xr = x + r * F;
        mpfr_set_d(mx, (double)xr[0], MPFR_RNDN);
        for (int k = 1; k < F; k++)
            if ((double)xr[k] > mpfr_get_d(mx, MPFR_RNDN))
                mpfr_set_d(mx, (double)xr[k], MPFR_RNDN);
        mpfr_set_zero(sum, 1);
        for (int k = 0; k < F; k++) {
            mpfr_set_d(t, (double)xr[k], MPFR_RNDN);
            mpfr_sub(t, t, mx, MPFR_RNDN);
            mpfr_exp(s[k].v, t, MPFR_RNDN);
            mpfr_add(sum, sum, s[k].v, MPFR_RNDN);
        }
        for (int k = 0; k < F; k++)
            mpfr_div(s[k].v, s[k].v, sum, MPFR_RNDN);
        /* uniform: half of R to each factor; the softmax's half goes
         * through the Taylor rule */
        mpfr_set_zero(sR, 1);
        mpfr_set_zero(xbar, 1);
        for (int k = 0; k < F; k++) {
            mpfr_set_d(t, R[r * F + k] / 2, MPFR_RNDN);
            mpfr_add(sR, sR, t, MPFR_RNDN);
            mpfr_mul_d(t, s[k].v, (double)xr[k], MPFR_RNDN);
            mpfr_add(xbar, xbar, t, MPFR_RNDN);
        }
        mpfr_set_zero(b, 1);
        for (int k = 0; k < F; k++) {
            mpfr_set_d(u, R[r * F + k] / 2, MPFR_RNDN);
            mpfr_mul(t, s[k].v, sR, MPFR_RNDN);
            mpfr_sub(t, u, t, MPFR_RNDN);
            mpfr_mul_d(t, t, (double)xr[k], MPFR_RNDN);
            mpfr_add_d(t, t, R[r * F + k] / 2, MPFR_RNDN); /* + the gate's half */
            out[r * F + k] = mpfr_get_d(t, MPFR_RNDN);
            mpfr_set_d(t, 1.0 - (double)xr[k], MPFR_RNDN);
            mpfr_add(t, t, xbar, MPFR_RNDN);
            mpfr_mul(t, t, u, MPFR_RNDN);
            mpfr_add(b, b, t, MPFR_RNDN);
        }
        absb[r] = mpfr_get_d(b, MPFR_RNDN);
    }
    nfree(s, F);
    mpfr_clears(mx, sum, e, sR, xbar, t, u, b, (mpfr_ptr)0);
}
