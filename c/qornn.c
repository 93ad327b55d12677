/* qornn: the integer QORNN recurrence (see qornn.h and docs/format.md). */
#include "qornn.h"
#include "qornn_kernels.h"

#include <math.h>
#include <string.h>

#define QORNN_MAX_SIZE 4096
#define QORNN_MAX_OUTPUTS 4096
#define QORNN_MAX_ALIGN 14
#define QORNN_MAX_SHIFT 62
#define QORNN_MAX_MANTISSA 4096
/* Block rotations' W: 16-bit mantissas (a rotation's gain is raised to the sequence's
 * length); its sums are below 2^24, so the products stay as bounded as a dense W's. */
#define QORNN_MAX_ROTATION_MANTISSA 65535
/* |f_h|, |f_x| at most this: every shift sum below stays far inside int32. */
#define QORNN_MAX_FRAC 62
/* |B| below 2^61: with both product terms below 2^61 the sum stays below 2^63. */
#define QORNN_BIAS_LIMIT ((int64_t)1 << 61)

/* S - S_w and S + f_h - S_u - f_x: the left shifts that align the two products, in int64
 * so that no field, however large, overflows the sum (validate then bounds them). */
static int64_t w_align(const qornn_model *m) { return (int64_t)m->shift - m->w_scale.shift; }
static int64_t u_align(const qornn_model *m) {
    return (int64_t)m->shift + m->hidden_frac - m->u_scale.shift - m->input_frac;
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

/* Row i's step mantissas, and its bias. */
static int32_t w_mantissa(const qornn_model *m, int32_t i) {
    return m->w_row_mantissas ? (int32_t)m->w_row_mantissas[i] : m->w_scale.mantissa;
}
static int32_t u_mantissa(const qornn_model *m, int32_t i) {
    return m->u_row_mantissas ? (int32_t)m->u_row_mantissas[i] : m->u_scale.mantissa;
}
static int64_t bias_of(const qornn_model *m, int32_t i) {
    return m->bias ? m->bias[i] : (int64_t)m->bias32[i];
}

static int32_t packed_code(const uint8_t *packed, int32_t bits, int32_t index);

qornn_status qornn_validate(const qornn_model *m) {
    int32_t i, w_max;
    if (!m || !m->u_packed || !m->w_packed || (!m->bias && !m->bias32) || !m->readout_bias)
        return QORNN_NULL;
    if (m->version != QORNN_VERSION) return QORNN_BAD_VERSION;
    if (m->hidden < 1 || m->input < 1 || m->outputs < 1 || m->hidden > QORNN_MAX_SIZE ||
        m->input > QORNN_MAX_SIZE)
        return QORNN_BAD_SIZE;
    if (m->u_bits < 2 || m->u_bits > 8 || m->act_bits < 2 || m->act_bits > 16)
        return QORNN_BAD_BITS;
    if (m->recurrence == QORNN_HADAMARD) {
        int32_t b = m->hadamard_block;
        if (b < 2 || (b & (b - 1)) != 0 || m->hidden % b != 0) return QORNN_BAD_HADAMARD;
    } else if (m->recurrence == QORNN_DENSE || m->recurrence == QORNN_ROTATIONS) {
        if (m->w_bits < 2 || m->w_bits > 8) return QORNN_BAD_BITS;
        if (m->hadamard_block != 0) return QORNN_BAD_HADAMARD;
        if (m->recurrence == QORNN_ROTATIONS) {
            if (m->hidden % 2 != 0) return QORNN_BAD_ROTATION;
            for (i = 0; i < m->hidden; i++)
                if (packed_code(m->w_packed, m->w_bits, i) == -((int32_t)1 << (m->w_bits - 1)))
                    return QORNN_BAD_ROTATION;
        }
    } else {
        return QORNN_BAD_KIND;
    }
    if (!in_range(m->shift, 0, QORNN_MAX_SHIFT) ||
        !in_range(m->w_scale.shift, 0, QORNN_MAX_SHIFT) ||
        !in_range(m->u_scale.shift, 0, QORNN_MAX_SHIFT) ||
        !in_range(m->hidden_frac, -QORNN_MAX_FRAC, QORNN_MAX_FRAC) ||
        !in_range(m->input_frac, -QORNN_MAX_FRAC, QORNN_MAX_FRAC) ||
        !in_range(w_align(m), 0, QORNN_MAX_ALIGN) || !in_range(u_align(m), 0, QORNN_MAX_ALIGN))
        return QORNN_BAD_SHIFT;
    w_max = m->recurrence == QORNN_ROTATIONS ? QORNN_MAX_ROTATION_MANTISSA : QORNN_MAX_MANTISSA;
    for (i = 0; i < m->hidden; i++) {
        if (w_mantissa(m, i) < 1 || w_mantissa(m, i) > w_max ||
            u_mantissa(m, i) < 1 || u_mantissa(m, i) > QORNN_MAX_MANTISSA)
            return QORNN_BAD_MANTISSA;
        if (bias_of(m, i) >= QORNN_BIAS_LIMIT || bias_of(m, i) <= -QORNN_BIAS_LIMIT)
            return QORNN_BAD_BIAS;
    }
    if (m->modrelu && !m->bias_mod) return QORNN_NULL;
    if (m->outputs > QORNN_MAX_OUTPUTS) return QORNN_BAD_SIZE;
    if (m->readout_bits == 0) {
        if (!m->readout_weight) return QORNN_NULL;
        for (i = 0; i < m->outputs * m->hidden; i++)
            if (!isfinite(m->readout_weight[i])) return QORNN_BAD_READOUT;
    } else {
        if (m->readout_bits < 2 || m->readout_bits > 16) return QORNN_BAD_BITS;
        if (!m->readout_packed) return QORNN_NULL;
        if (!in_range(m->readout_scale.shift, 0, QORNN_MAX_SHIFT)) return QORNN_BAD_SHIFT;
        if (!in_range(m->readout_scale.mantissa, 1, QORNN_MAX_MANTISSA))
            return QORNN_BAD_MANTISSA;
    }
    for (i = 0; i < m->outputs; i++)
        if (!isfinite(m->readout_bias[i])) return QORNN_BAD_READOUT;
    return QORNN_OK;
}

qornn_status qornn_state_init(const qornn_model *m, qornn_state *state, int32_t *buffer,
                              size_t buffer_words) {
    if (!m || !state || !buffer) return QORNN_NULL;
    if (m->hidden < 1 || buffer_words < QORNN_STATE_WORDS(m->hidden)) return QORNN_BAD_BUFFER;
    state->h = buffer;
    state->scratch = buffer + m->hidden;
    state->pairs = (uint32_t *)(void *)(buffer + 2 * m->hidden);
    qornn_reset(m, state);
    return QORNN_OK;
}

void qornn_reset(const qornn_model *m, qornn_state *state) {
    int32_t i;
    for (i = 0; i < m->hidden; i++) state->h[i] = 0;
}

/* Code `index` of a packed k-bit matrix (little-endian bit order, k <= 16), sign-extended. */
static int32_t packed_code(const uint8_t *packed, int32_t bits, int32_t index) {
    uint32_t bit = (uint32_t)index * (uint32_t)bits;
    uint32_t byte = bit >> 3, offset = bit & 7;
    uint32_t word = packed[byte];
    uint32_t raw;
    /* A code of k bits at `offset` spans these bytes, and no more. */
    if (offset + (uint32_t)bits > 8) word |= (uint32_t)packed[byte + 1] << 8;
    if (offset + (uint32_t)bits > 16) word |= (uint32_t)packed[byte + 2] << 16;
    raw = (word >> offset) & ((1u << bits) - 1u);
    /* Two's complement without shifting a negative value: subtract 2^k above 2^(k-1). */
    return raw >= (1u << (bits - 1)) ? (int32_t)raw - (int32_t)(1u << bits) : (int32_t)raw;
}

/* Code `index` of packed 4-bit codes: a nibble of its byte, sign-extended. */
static int32_t nibble_code(const uint8_t *packed, int32_t index) {
    int32_t nibble = (packed[index >> 1] >> ((index & 1) << 2)) & 15;
    return nibble >= 8 ? nibble - 16 : nibble;
}

/* floor(v / 2^s) for any sign, without shifting a negative value. */
static int64_t floor_shift(int64_t v, int32_t s) {
    if (v >= 0) return v >> s;
    return -(int64_t)(((uint64_t)(-(v + 1)) >> s)) - 1;
}

/* What `finish` needs that is the same for every unit of a model: taken once a step. */
typedef struct {
    int64_t w_align, u_align;
    int32_t w_scale, u_scale; /* M_w 2^(S - S_w), M_u 2^(S + f_h - S_u - f_x): the tensors'
                                 steps (each below 2^30), for a model without row steps */
    int64_t half;   /* 2^(S - 1), rounding half up before the shift by S (0 when S = 0) */
    int64_t lo, hi; /* the activation's codes: [-2^(A-1), 2^(A-1) - 1] or [0, 2^A - 1] */
    int64_t relu_top; /* (hi + 1) 2^S, from which ReLU's code is hi (INT64_MAX where that
                         is 2^63 or more: no numerator reaches it, none passes hi) */
    int relu_word;    /* (hi + 1) 2^S <= 2^32: ReLU's codes below hi by a 32-bit shift */
} unit_rules;

static unit_rules rules_of(const qornn_model *m) {
    unit_rules r;
    r.w_align = w_align(m);
    r.u_align = u_align(m);
    r.w_scale = (int32_t)((uint32_t)m->w_scale.mantissa << r.w_align);
    r.u_scale = (int32_t)((uint32_t)m->u_scale.mantissa << r.u_align);
    r.half = m->shift == 0 ? 0 : (int64_t)1 << (m->shift - 1);
    r.lo = m->modrelu ? -((int64_t)1 << (m->act_bits - 1)) : 0;
    r.hi = m->modrelu ? ((int64_t)1 << (m->act_bits - 1)) - 1 : ((int64_t)1 << m->act_bits) - 1;
    /* ReLU's hi + 1 is 2^A: (hi + 1) 2^S fits int64 for A + S <= 62. */
    r.relu_top = m->act_bits + m->shift <= 62 ? (r.hi + 1) << m->shift : INT64_MAX;
    r.relu_word = r.relu_top <= ((int64_t)1 << 32);
    return r;
}

/* acc times a step M 2^align below 2^30, exactly: one 32 x 32 -> 64-bit multiply (SMULL on
 * a Cortex-M) when acc fits int32_t (every sum of a step but those of rows longer than 256
 * codes), a 64-bit product otherwise. */
static int64_t scaled(int64_t acc, int32_t scale) {
    if (acc >= INT32_MIN && acc <= INT32_MAX) return (int64_t)(int32_t)acc * scale;
    return acc * scale;
}

/* Unit i's code from its numerator with the rounding term added, num = N_i + 2^(S-1):
 * shifted by S (rounding down), activated and saturated (qornn.h). */
static inline int32_t activate(const qornn_model *m, const unit_rules *r, int32_t i, int64_t num) {
    int64_t z, a;
    if (!m->modrelu) {
        /* ReLU's code: 0 below 0, hi from (hi + 1) 2^S on, floor(num / 2^S) between (a
         * 32-bit shift where (hi + 1) 2^S <= 2^32). */
        if (num < 0) return 0;
        if (num >= r->relu_top) return (int32_t)r->hi;
        return r->relu_word ? (int32_t)((uint32_t)num >> m->shift) : (int32_t)(num >> m->shift);
    }
    z = floor_shift(num, m->shift);
    a = (z < 0 ? -z : z) + m->bias_mod[i];
    if (a < 0) a = 0;
    if (z < 0) a = -a;
    if (z == 0) a = 0;
    return (int32_t)(a < r->lo ? r->lo : (a > r->hi ? r->hi : a));
}

/* Row i's steps (its own where the model has row mantissas). */
static int32_t w_step(const qornn_model *m, const unit_rules *r, int32_t i) {
    return m->w_row_mantissas ? (int32_t)((uint32_t)m->w_row_mantissas[i] << r->w_align)
                              : r->w_scale;
}
static int32_t u_step(const qornn_model *m, const unit_rules *r, int32_t i) {
    return m->u_row_mantissas ? (int32_t)((uint32_t)m->u_row_mantissas[i] << r->u_align)
                              : r->u_scale;
}

/* Rescale, add the bias, round half up, activate and saturate unit i (qornn.h). */
static int32_t finish(const qornn_model *m, const unit_rules *r, int32_t i, int64_t acc_w,
                      int64_t acc_u) {
    int64_t num = scaled(acc_w, w_step(m, r, i)) + scaled(acc_u, u_step(m, r, i));
    return activate(m, r, i, num + bias_of(m, i) + r->half);
}

/* `finish` for sums that fit int32: two 32 x 32 -> 64-bit products (SMULL, SMLAL on a
 * Cortex-M4). */
static inline int32_t finish_sums32(const qornn_model *m, const unit_rules *r, int32_t i,
                                    int32_t acc_w, int32_t acc_u) {
    int64_t num = (int64_t)acc_w * w_step(m, r, i) + (int64_t)acc_u * u_step(m, r, i);
    return activate(m, r, i, num + bias_of(m, i) + r->half);
}

/* scratch = (I ⊗ H_m) h by an in-place fast Walsh-Hadamard transform per block: n log2(m)
 * additions and subtractions, no multiplication (|values| < 2^16 m fits int32). */
static void hadamard_transform(const qornn_model *m, const int32_t *h, int32_t *out) {
    int32_t n = m->hidden, b = m->hadamard_block, start, len, i, j;
    for (i = 0; i < n; i++) out[i] = h[i];
    for (start = 0; start < n; start += b)
        for (len = 1; len < b; len <<= 1)
            for (i = start; i < start + b; i += len << 1)
                for (j = i; j < i + len; j++) {
                    int32_t x = out[j], y = out[j + len];
                    out[j] = x + y;
                    out[j + len] = x - y;
                }
}

/* sum_j C_j V_j over a row of `len` packed k-bit codes starting at code `first`. Products
 * are below 2^23 in magnitude (|C| <= 2^7, |V| < 2^16), so 256 of them sum exactly in
 * int32 (at most 127 * 65535 * 256 < 2^31); each chunk is then widened to int64. Byte and
 * nibble codes are read directly (nibbles from any code, odd or even). */
static int64_t packed_dot(const uint8_t *packed, int32_t bits, int32_t first, int32_t len,
                          const int32_t *values) {
    int64_t total = 0;
    int32_t start, j;
    for (start = 0; start < len; start += 256) {
        int32_t end = len - start > 256 ? start + 256 : len, acc = 0;
        if (bits == 8) {
            const int8_t *codes = (const int8_t *)(const void *)(packed + first);
            for (j = start; j < end; j++) acc += (int32_t)codes[j] * values[j];
        } else if (bits == 4) {
            for (j = start; j < end; j++) acc += nibble_code(packed, first + j) * values[j];
        } else {
            for (j = start; j < end; j++) acc += packed_code(packed, bits, first + j) * values[j];
        }
        total += acc;
    }
    return total;
}

static int64_t input_sum(const qornn_model *m, int32_t i, const int32_t *x) {
    return packed_dot(m->u_packed, m->u_bits, i * m->input, m->input, x);
}

/* Every row's input sum into `sums` (n values) in one pass over U's codes, where d <= 256:
 * each sum then fits int32 (packed_dot's chunk bound). Returns 0, writing nothing, for a
 * larger d. */
static int input_sums(const qornn_model *m, const int32_t *x, int32_t *sums) {
    int32_t n = m->hidden, d = m->input, i, j, k = 0;
    if (d > 256) return 0;
    if (d == 1) {
        /* One input (pixel MNIST): one product per unit, codes read in order. */
        int32_t x0 = x[0];
        if (m->u_bits == 8) {
            const int8_t *codes = (const int8_t *)(const void *)m->u_packed;
            for (i = 0; i < n; i++) sums[i] = (int32_t)codes[i] * x0;
        } else if (m->u_bits == 4) {
            for (i = 0; i < n; i++) sums[i] = nibble_code(m->u_packed, i) * x0;
        } else {
            for (i = 0; i < n; i++) sums[i] = packed_code(m->u_packed, m->u_bits, i) * x0;
        }
        return 1;
    }
    if ((m->u_bits == 8 || (m->u_bits == 4 && d % 2 == 0)) && d >= 4 && d <= 64) {
        qornn_paired_input_sums(m, x, sums);
        return 1;
    }
    if (m->u_bits == 4 && d >= 4) {
        /* A byte (two codes) a turn, each nibble sign-extended as ((v & 15) ^ 8) - 8; a row
         * that starts on a high nibble takes that one alone first. */
        for (i = 0; i < n; i++) {
            const int32_t *xj = x;
            int32_t left = d, acc = 0;
            if (k & 1) {
                acc += nibble_code(m->u_packed, k++) * *xj++;
                left--;
            }
            for (; left >= 2; left -= 2, k += 2, xj += 2) {
                uint32_t byte = m->u_packed[k >> 1];
                acc += ((int32_t)((byte & 15u) ^ 8u) - 8) * xj[0] +
                       ((int32_t)((byte >> 4) ^ 8u) - 8) * xj[1];
            }
            if (left) acc += nibble_code(m->u_packed, k++) * *xj;
            sums[i] = acc;
        }
        return 1;
    }
    for (i = 0; i < n; i++) {
        int32_t acc = 0;
        if (m->u_bits == 4) {
            for (j = 0; j < d; j++, k++) acc += nibble_code(m->u_packed, k) * x[j];
        } else if (m->u_bits == 8) {
            for (j = 0; j < d; j++, k++) acc += (int32_t)(int8_t)m->u_packed[k] * x[j];
        } else {
            for (j = 0; j < d; j++, k++) acc += packed_code(m->u_packed, m->u_bits, k) * x[j];
        }
        sums[i] = acc;
    }
    return 1;
}

void qornn_step(const qornn_model *m, qornn_state *state, const int32_t *x) {
    const unit_rules rules = rules_of(m);
    int32_t n = m->hidden, i;
    int32_t *h = state->h, *next = state->scratch;
    /* The structured forms leave the pairs buffer (n words) free for the input sums. */
    int32_t *u_sums = (int32_t *)(void *)state->pairs;
    if (m->recurrence == QORNN_HADAMARD) {
        int all = input_sums(m, x, u_sums);
        hadamard_transform(m, h, next);
        for (i = 0; i < n; i++) {
            /* |(H h)_i| <= m 2^16 <= 2^28: the sums fit int32. */
            int32_t negative = (m->w_packed[i >> 3] >> (i & 7)) & 1;
            int32_t acc_w = negative ? -next[i] : next[i];
            if (all)
                next[i] = finish_sums32(m, &rules, i, acc_w, u_sums[i]);
            else
                next[i] = finish(m, &rules, i, acc_w, input_sum(m, i, x));
        }
    } else if (m->recurrence == QORNN_ROTATIONS) {
        int all = input_sums(m, x, u_sums);
        /* Pair p: [[a, -b], [b, a]] (h_2p, h_2p+1), 4 multiply-adds. */
        for (i = 0; i < n; i += 2) {
            /* |a h0 - b h1| <= 2^7 2^16 2: the sums fit int32. */
            int32_t a = packed_code(m->w_packed, m->w_bits, i);
            int32_t b = packed_code(m->w_packed, m->w_bits, i + 1);
            int32_t h0 = h[i], h1 = h[i + 1];
            if (all) {
                next[i] = finish_sums32(m, &rules, i, a * h0 - b * h1, u_sums[i]);
                next[i + 1] = finish_sums32(m, &rules, i + 1, b * h0 + a * h1, u_sums[i + 1]);
            } else {
                next[i] = finish(m, &rules, i, a * h0 - b * h1, input_sum(m, i, x));
                next[i + 1] = finish(m, &rules, i + 1, b * h0 + a * h1, input_sum(m, i + 1, x));
            }
        }
    } else if (qornn_paired(m)) {
        /* The codes after a row's last whole word, one at a time. */
        int32_t done = n - n % qornn_codes_per_word(m);
        /* The input sums first, into next: each unit reads its own before it writes it. */
        int all = input_sums(m, x, next);
        qornn_pair_hidden(m, h, state->pairs);
        i = 0;
        if (m->w_bits == 8 && n <= QORNN_FOUR_ROWS_MAX) {
            for (; i + 4 <= n; i += 4) {
                int32_t sums[4], k;
                qornn_byte_rows4(m, i, state->pairs, h, sums);
                for (k = 0; k < 4; k++) {
                    if (all)
                        next[i + k] = finish_sums32(m, &rules, i + k, sums[k], next[i + k]);
                    else
                        next[i + k] = finish(m, &rules, i + k, sums[k], input_sum(m, i + k, x));
                }
            }
        }
        for (; i < n; i += 2) {
            /* Rows i and i + 1 together (an odd n's last row with itself). */
            int32_t r = i + 1 < n ? i + 1 : i, k;
            int64_t sums[2];
            qornn_paired_rows(m, i, r, state->pairs, sums);
            for (k = 0; k <= r - i; k++) {
                int64_t acc_w = sums[k];
                if (done < n) acc_w += qornn_row_tail(m, i + k, done, h);
                next[i + k] =
                    finish(m, &rules, i + k, acc_w, all ? next[i + k] : input_sum(m, i + k, x));
            }
        }
    } else {
        int all = input_sums(m, x, next);
        for (i = 0; i < n; i++) {
            int64_t acc_w = packed_dot(m->w_packed, m->w_bits, i * n, n, h);
            next[i] = finish(m, &rules, i, acc_w, all ? next[i] : input_sum(m, i, x));
        }
    }
    state->h = next;
    state->scratch = h;
}

void qornn_quantize_input(const qornn_model *m, const float *x, int32_t *codes) {
    const double hi = (double)(((int32_t)1 << (m->act_bits - 1)) - 1);
    int32_t j;
    for (j = 0; j < m->input; j++) {
        /* round() is half away from zero, as the trainer's quantizer. */
        double v = round(ldexp((double)x[j], m->input_frac));
        codes[j] = (int32_t)(v > hi ? hi : (v < -hi - 1.0 ? -hi - 1.0 : v));
    }
}

/* sum_j V_ij H_j of a quantized read-out (|V_ij| <= 2^15, |H_j| < 2^16: exact in int64). */
static int64_t readout_sum(const qornn_model *m, const int32_t *h, int32_t i) {
    int64_t acc = 0;
    int32_t j, n = m->hidden;
    for (j = 0; j < n; j++)
        acc += (int64_t)packed_code(m->readout_packed, m->readout_bits, i * n + j) * h[j];
    return acc;
}

qornn_status qornn_readout_sums(const qornn_model *m, const qornn_state *state,
                                int64_t *sums) {
    int32_t i;
    if (m->readout_bits == 0) return QORNN_BAD_BITS;
    for (i = 0; i < m->outputs; i++) sums[i] = readout_sum(m, state->h, i);
    return QORNN_OK;
}

void qornn_readout(const qornn_model *m, const qornn_state *state, float *y) {
    int32_t i, j, n = m->hidden;
    if (m->readout_bits) {
        double scale =
            ldexp((double)m->readout_scale.mantissa, -(m->readout_scale.shift + m->hidden_frac));
        for (i = 0; i < m->outputs; i++)
            y[i] = (float)((double)readout_sum(m, state->h, i) * scale + (double)m->readout_bias[i]);
    } else {
        float unit = ldexpf(1.0f, -m->hidden_frac);
        for (i = 0; i < m->outputs; i++) {
            float acc = m->readout_bias[i];
            for (j = 0; j < n; j++) acc += m->readout_weight[i * n + j] * (float)state->h[j] * unit;
            y[i] = acc;
        }
    }
}
