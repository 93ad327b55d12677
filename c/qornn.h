/* qornn: the integer recurrence of a quantized orthogonal RNN, for microcontrollers.
 *
 * C99, no malloc, no floating point in the recurrence, no undefined behaviour. A model is
 * a `qornn_model` pointing into const arrays (written by `qornn export --c DIR` as
 * qornn_model.h); the state lives in a buffer the caller owns (QORNN_STATE_WORDS).
 *
 *     int32_t buffer[QORNN_STATE_WORDS(HIDDEN)];
 *     qornn_state state;
 *     if (qornn_validate(&model) != QORNN_OK) ...;
 *     qornn_state_init(&model, &state, buffer, QORNN_STATE_WORDS(HIDDEN));
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

/* The `.qornn` format version whose recurrence this library computes; a model header
 * written by `qornn export --c` states the version it was written for, and qornn_validate
 * refuses another. */
#define QORNN_VERSION 4

/* Words of int32_t a state needs for `hidden` units: the hidden codes, a scratch row, and
 * the hidden codes as 16-bit pairs for the paired kernel. */
#define QORNN_STATE_WORDS(hidden) (3 * (size_t)(hidden))

/* What every function that can refuse returns. */
typedef enum {
    QORNN_OK = 0,
    QORNN_BAD_SIZE = 1,
    QORNN_BAD_BITS = 2,
    QORNN_BAD_SHIFT = 3,
    QORNN_BAD_MANTISSA = 4,
    QORNN_BAD_BIAS = 5,
    QORNN_BAD_HADAMARD = 6,
    QORNN_NULL = 7,
    QORNN_BAD_READOUT = 8,  /* a float read-out weight or bias that is NaN or infinite */
    QORNN_BAD_ROTATION = 9, /* rotations with an odd n or a code -2^(k-1) */
    QORNN_BAD_BUFFER = 10,  /* a state buffer shorter than QORNN_STATE_WORDS(hidden) */
    QORNN_BAD_VERSION = 11, /* a model written for another QORNN_VERSION */
    QORNN_BAD_KIND = 12     /* a recurrence kind that is none of qornn_recurrence_kind */
} qornn_status;

/* How W is stored in `w_packed` and applied. */
typedef enum {
    QORNN_DENSE = 0,     /* n x n k-bit codes, row-major */
    QORNN_HADAMARD = 1,  /* W = diag(s) (I ⊗ H_m): n sign bits (bit i set: s_i = -1) */
    QORNN_ROTATIONS = 2  /* blocks [[a, -b], [b, a]]: the n codes a0 b0 a1 b1 .. */
} qornn_recurrence_kind;

/* A step M 2^-S: a mantissa of at most 12 bits (16 for the rows of block rotations' W)
 * and a shift. */
typedef struct {
    int32_t mantissa;
    int32_t shift;
} qornn_scale;

typedef struct {
    int32_t version;        /* QORNN_VERSION of the header that filled it */
    int32_t hidden;         /* n */
    int32_t input;          /* d */
    int32_t outputs;        /* C */
    int32_t w_bits;         /* k of W (ignored for QORNN_HADAMARD) */
    int32_t u_bits;         /* k of U */
    int32_t act_bits;       /* A: hidden codes are A-bit (unsigned for ReLU, signed for modReLU) */
    int32_t modrelu;        /* 0: ReLU, 1: modReLU */
    int32_t hidden_frac;    /* f_h: H = h 2^f_h */
    int32_t input_frac;     /* f_x: X = x 2^f_x */
    int32_t shift;          /* S */
    int32_t recurrence;     /* a qornn_recurrence_kind */
    int32_t hadamard_block; /* QORNN_HADAMARD: the block size m (else 0) */
    qornn_scale w_scale;    /* W's step M_w 2^-S_w (M_w unused with w_row_mantissas) */
    qornn_scale u_scale;    /* U's step M_u 2^-S_u */
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
    const uint8_t *readout_packed;     /* C x n codes of readout_bits bits, packed as W's
                                          (readout_bits > 0) */
    qornn_scale readout_scale;         /* V's step M_v 2^-S_v */
    const float *readout_bias;         /* c: C values */
} qornn_model;

typedef struct {
    int32_t *h;       /* the hidden codes H, n values (swaps with scratch every step) */
    uint32_t *pairs;  /* n / 2 words: H as 16-bit pairs in the paired kernel's order */
    int32_t *scratch; /* n values */
} qornn_state;

/* Checks dimensions, bit widths, shifts, fractions, mantissas, biases and the read-out
 * against the bounds under which no sum overflows and no shift is undefined (the same as
 * the Rust runtime's, listed in docs/format.md); QORNN_OK or the first problem found. */
qornn_status qornn_validate(const qornn_model *model);

/* Points `state` at `buffer` of `buffer_words` words and resets it; QORNN_BAD_BUFFER (and
 * `state` untouched) when that is fewer than QORNN_STATE_WORDS(model->hidden). */
qornn_status qornn_state_init(const qornn_model *model, qornn_state *state, int32_t *buffer,
                              size_t buffer_words);

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
qornn_status qornn_readout_sums(const qornn_model *model, const qornn_state *state,
                                int64_t *sums);

/* The outputs y = V h + c as floats (from the integer sums when V is quantized). */
void qornn_readout(const qornn_model *model, const qornn_state *state, float *outputs);

#ifdef __cplusplus
}
#endif

#endif /* QORNN_H */
