/* qornn: the integer recurrence of a quantized orthogonal RNN, for microcontrollers.
 *
 * C99, no malloc, no floating point in the recurrence, no undefined behaviour. A model is
 * a `qornn_model` pointing into const arrays (written by `qornn export --c DIR` as
 * qornn_model.h); the state lives in a buffer the caller owns (QORNN_STATE_WORDS).
 *
 *     int32_t buffer[QORNN_STATE_WORDS(HIDDEN)];
 *     qornn_state state;
 *     qornn_state_init(&model, &state, buffer);
 *     for each input x_t: qornn_quantize_input(&model, x_t, codes);
 *                         qornn_step(&model, &state, codes);
 *     qornn_readout(&model, &state, outputs);
 *
 * One step (docs/format.md): for every unit i,
 *     num_i = (sum_j W_ij H_j) M_w,i 2^(S - S_w) + (sum_j U_ij X_j) M_u,i 2^(S + f_h - S_u - f_x) + B_i
 *     Z_i   = floor((num_i + 2^(S-1)) / 2^S)
 *     H_i   = clamp(act(Z_i), A bits)     (ReLU: max(Z, 0); modReLU: sign(Z) max(|Z| + Bm_i, 0))
 * with W's codes W_ij (k bits, packed), for a Hadamard recurrence W = diag(s) (I ⊗ H_m)
 * applied by a fast Walsh-Hadamard transform (additions only), or for block rotations the
 * 2 x 2 blocks [[a, -b], [b, a]] (4 multiply-adds per pair of units). A step mantissa is
 * the tensor's (M_w, M_u) or its row's (w_row_mantissas, u_row_mantissas, the shift
 * shared). Every value stays within
 * int64 for a model that passes `qornn_validate` (the bound is in docs/format.md). */
#ifndef QORNN_H
#define QORNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Words of int32_t a state needs for `hidden` units: the hidden codes and a scratch row. */
#define QORNN_STATE_WORDS(hidden) (2 * (size_t)(hidden))

typedef struct {
    int32_t hidden;         /* n */
    int32_t input;          /* d */
    int32_t outputs;        /* C */
    int32_t w_bits;         /* k of W (ignored for a Hadamard recurrence) */
    int32_t u_bits;         /* k of U */
    int32_t act_bits;       /* A: hidden codes are A-bit (unsigned for ReLU, signed for modReLU) */
    int32_t modrelu;        /* 0: ReLU, 1: modReLU */
    int32_t hidden_frac;    /* f_h: H = h 2^f_h */
    int32_t input_frac;     /* f_x: X = x 2^f_x */
    int32_t shift;          /* S */
    int32_t w_mantissa;     /* M_w */
    int32_t w_shift;        /* S_w */
    int32_t u_mantissa;     /* M_u */
    int32_t u_shift;        /* S_u */
    int32_t hadamard_block; /* 0: dense W; m: W = diag(s) (I ⊗ H_m), w_packed = n sign bits */
    int32_t rotations;      /* 1: W = blocks [[a, -b], [b, a]], w_packed = n codes a0 b0 a1 b1 .. */
    const uint16_t *w_row_mantissas; /* n mantissas M_w,i (the shift S_w shared), or NULL */
    const uint16_t *u_row_mantissas; /* n mantissas M_u,i, or NULL */
    const uint8_t *w_packed;
    const uint8_t *u_packed;
    const int64_t *bias;     /* B: n values in units of 2^-(S + f_h), or NULL with bias32 */
    const int32_t *bias32;   /* B when every value fits int32 (then bias is NULL) */
    const int32_t *bias_mod; /* Bm: n values in units of 2^-f_h (modReLU only) */
    /* The read-out y = V h + c, after the last step (or every step). */
    int32_t readout_every_step;
    int32_t readout_bits;              /* 0: float V; else V = codes M_v 2^-S_v */
    const float *readout_weight;       /* C x n, float V (readout_bits == 0) */
    const int16_t *readout_codes;      /* C x n (readout_bits > 0) */
    int32_t readout_mantissa;          /* M_v */
    int32_t readout_shift;             /* S_v */
    const float *readout_bias;         /* c: C values */
} qornn_model;

typedef struct {
    int32_t *h;       /* the hidden codes H, n values (swaps with scratch every step) */
    int32_t *scratch; /* n values */
} qornn_state;

enum {
    QORNN_OK = 0,
    QORNN_BAD_SIZE = 1,
    QORNN_BAD_BITS = 2,
    QORNN_BAD_SHIFT = 3,
    QORNN_BAD_MANTISSA = 4,
    QORNN_BAD_BIAS = 5,
    QORNN_BAD_HADAMARD = 6,
    QORNN_NULL = 7,
    QORNN_BAD_READOUT = 8, /* a float read-out weight or bias that is NaN or infinite */
    QORNN_BAD_ROTATION = 9 /* rotations with an odd n, a Hadamard block or a code -2^(k-1) */
};

/* Checks dimensions, bit widths, shifts, fractions, mantissas, biases and the read-out
 * against the bounds under which no sum overflows and no shift is undefined (the same as
 * the Rust runtime's, listed in docs/format.md); QORNN_OK or the first problem found. */
int qornn_validate(const qornn_model *model);

/* Points `state` at `buffer`, which holds QORNN_STATE_WORDS(model->hidden) words, and
 * resets it. */
void qornn_state_init(const qornn_model *model, qornn_state *state, int32_t *buffer);

/* The hidden state of a new sequence: all codes zero. */
void qornn_reset(const qornn_model *model, qornn_state *state);

/* One step with the input codes X (model->input values, each an A-bit signed code as
 * qornn_quantize_input writes them; the no-overflow bound assumes it). */
void qornn_step(const qornn_model *model, qornn_state *state, const int32_t *input_codes);

/* X = clamp(round(x 2^f_x), A-bit signed), rounding half away from zero: the codes of a
 * float input (outside the recurrence; the only floating point on the input side). */
void qornn_quantize_input(const qornn_model *model, const float *x, int32_t *codes);

/* Integer read-out sums sum_j V_ij H_j (readout_bits > 0; returns QORNN_BAD_BITS for a
 * float read-out). y_i = sums_i M_v 2^-(S_v + f_h) + c_i. */
int qornn_readout_sums(const qornn_model *model, const qornn_state *state, int64_t *sums);

/* The outputs y = V h + c as floats (from the integer sums when V is quantized). */
void qornn_readout(const qornn_model *model, const qornn_state *state, float *outputs);

#ifdef __cplusplus
}
#endif

#endif /* QORNN_H */
