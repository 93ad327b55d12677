/* qornn: the integer QORNN recurrence (see qornn.h and docs/format.md). */
#include "qornn.h"

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
    return r;
}

/* acc times a step M 2^align below 2^30, exactly: one 32 x 32 -> 64-bit multiply (SMULL on
 * a Cortex-M) when acc fits int32_t (every sum of a step but those of rows longer than 256
 * codes), a 64-bit product otherwise. */
static int64_t scaled(int64_t acc, int32_t scale) {
    if (acc >= INT32_MIN && acc <= INT32_MAX) return (int64_t)(int32_t)acc * scale;
    return acc * scale;
}

/* Rescale, add the bias, round half up, activate and saturate unit i (qornn.h). */
static int32_t finish(const qornn_model *m, const unit_rules *r, int32_t i, int64_t acc_w,
                      int64_t acc_u) {
    int32_t w_scale = m->w_row_mantissas
                          ? (int32_t)((uint32_t)m->w_row_mantissas[i] << r->w_align)
                          : r->w_scale;
    int32_t u_scale = m->u_row_mantissas
                          ? (int32_t)((uint32_t)m->u_row_mantissas[i] << r->u_align)
                          : r->u_scale;
    int64_t num = scaled(acc_w, w_scale) + scaled(acc_u, u_scale) + bias_of(m, i);
    int64_t z = floor_shift(num + r->half, m->shift);
    int64_t a;
    if (m->modrelu) {
        int64_t mag = (z < 0 ? -z : z) + m->bias_mod[i];
        if (mag < 0) mag = 0;
        a = z > 0 ? mag : (z < 0 ? -mag : 0);
    } else {
        a = z < 0 ? 0 : z;
    }
    return (int32_t)(a < r->lo ? r->lo : (a > r->hi ? r->hi : a));
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

/* The paired kernel for a dense W of 8- or 4-bit codes (hidden codes that fit int16): each
 * 32-bit word of codes is split into two words of two 16-bit codes (SXTB16, with a
 * rotation for the odd bytes), and each multiplies a word of two hidden codes with one
 * SMLAD, two multiply-adds per instruction; rows go two at a time, so that each word of
 * hidden pairs is loaded once for both. The hidden codes are laid out once per step in
 * the order the split gives (`pair_hidden`). 4-bit codes are split as 16 times their value
 * (a nibble moved to the top of its byte), and each chunk's sum divided by 16, exactly.
 * On a Cortex-M with the DSP extension (__ARM_FEATURE_DSP) these are the instructions
 * themselves; elsewhere the same arithmetic in C99, so that the host checks the layout. */
#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
static int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}
static uint32_t sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int8x4_t)x); }
/* SXTB16 with its operand rotated, one instruction (the compiler rotates first otherwise). */
static uint32_t sxtb16_ror8(uint32_t x) {
    uint32_t out;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(out) : "r"(x));
    return out;
}
#else
static int32_t lane(uint32_t x, int shift) {
    int32_t v = (int32_t)((x >> shift) & 0xffffu);
    return v >= 0x8000 ? v - 0x10000 : v;
}
static int32_t smlad(uint32_t a, uint32_t b, int32_t acc) {
    return acc + lane(a, 0) * lane(b, 0) + lane(a, 16) * lane(b, 16);
}
static uint32_t byte_lane(uint32_t x, int shift) {
    int32_t v = (int32_t)((x >> shift) & 0xffu);
    return (uint32_t)(uint16_t)(v >= 0x80 ? v - 0x100 : v);
}
static uint32_t sxtb16(uint32_t x) { return byte_lane(x, 0) | byte_lane(x, 16) << 16; }
static uint32_t sxtb16_ror8(uint32_t x) { return byte_lane(x, 8) | byte_lane(x, 24) << 16; }
#endif

static uint32_t pair16(int32_t lo, int32_t hi) {
    return (uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16;
}

/* Four bytes of codes, little-endian (the format's order). On a little-endian Cortex-M a
 * single (unaligned) load. */
static uint32_t load_word(const uint8_t *p) {
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_BIG_ENDIAN)
    uint32_t word;
    memcpy(&word, p, sizeof word);
    return word;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
#endif
}

/* Whether the paired kernel runs W: dense codes of 8 bits, or of 4 bits with n even (every
 * row then starts on a byte), hidden codes within int16. A row's whole words of codes go
 * through the pairs; the codes after its last whole word (n mod 4 bytes, n mod 8 nibbles)
 * are taken one at a time. */
static int paired(const qornn_model *m) {
    int fits = m->modrelu || m->act_bits <= 15;
    return m->recurrence == QORNN_DENSE && fits &&
           (m->w_bits == 8 || (m->w_bits == 4 && m->hidden % 2 == 0));
}

/* Codes per 32-bit word of a paired row (8 or 4 bits). */
static int32_t codes_per_word(const qornn_model *m) { return m->w_bits == 8 ? 4 : 8; }

/* H in the order the split of a word gives: 8-bit codes, per 4 units (h0, h2), (h1, h3);
 * 4-bit codes, per 8 units (h0, h4), (h2, h6), (h1, h5), (h3, h7). */
static void pair_hidden(const qornn_model *m, const int32_t *h, uint32_t *pairs) {
    int32_t g, n = m->hidden - m->hidden % codes_per_word(m);
    if (m->w_bits == 8) {
        for (g = 0; g < n; g += 4) {
            *pairs++ = pair16(h[g], h[g + 2]);
            *pairs++ = pair16(h[g + 1], h[g + 3]);
        }
    } else {
        for (g = 0; g < n; g += 8) {
            *pairs++ = pair16(h[g], h[g + 4]);
            *pairs++ = pair16(h[g + 2], h[g + 6]);
            *pairs++ = pair16(h[g + 1], h[g + 5]);
            *pairs++ = pair16(h[g + 3], h[g + 7]);
        }
    }
}

/* Two 16-bit pairs of row a's codes and two of row b's against two words of hidden pairs:
 * acc_a += a0 . p0 + a1 . p1, acc_b likewise (four SMLAD). */
static void smlad_rows(uint32_t a0, uint32_t a1, uint32_t b0, uint32_t b1, uint32_t p0,
                       uint32_t p1, int32_t *acc_a, int32_t *acc_b) {
    int32_t sum_a = smlad(a0, p0, *acc_a), sum_b = smlad(b0, p0, *acc_b);
    *acc_a = smlad(a1, p1, sum_a);
    *acc_b = smlad(b1, p1, sum_b);
}

/* Rows i and r of W times H by the paired kernel, into sums[0] and sums[1]: each word of
 * hidden pairs is loaded once for both rows. Each product is below 2^22 in magnitude (a
 * code or 16 times a 4-bit code is at most 2^7, |H| <= 2^15), so 256 of them sum exactly in
 * int32 before the chunk is widened: 64 words of 8-bit codes, 32 of 4-bit codes. */
static void paired_rows(const qornn_model *m, int32_t i, int32_t r, const uint32_t *pairs,
                        int64_t sums[2]) {
    int32_t n = m->hidden, words = n / codes_per_word(m), start, w;
    int32_t chunk = m->w_bits == 8 ? 64 : 32;
    size_t row_bytes = (size_t)n * (size_t)m->w_bits / 8;
    const uint8_t *row_a = m->w_packed + (size_t)i * row_bytes;
    const uint8_t *row_b = m->w_packed + (size_t)r * row_bytes;
    sums[0] = sums[1] = 0;
    for (start = 0; start < words; start += chunk) {
        int32_t end = words - start > chunk ? start + chunk : words, acc_a = 0, acc_b = 0;
        if (m->w_bits == 8) {
            /* A word splits into its even and its odd bytes; two words a turn, one loop
             * test per 16 multiply-adds. */
            for (w = start; w + 2 <= end; w += 2) {
                uint32_t a0 = load_word(row_a + 4 * w), b0 = load_word(row_b + 4 * w);
                uint32_t a1 = load_word(row_a + 4 * w + 4), b1 = load_word(row_b + 4 * w + 4);
                const uint32_t *p = pairs + 2 * w;
                smlad_rows(sxtb16(a0), sxtb16_ror8(a0), sxtb16(b0), sxtb16_ror8(b0), p[0], p[1],
                           &acc_a, &acc_b);
                smlad_rows(sxtb16(a1), sxtb16_ror8(a1), sxtb16(b1), sxtb16_ror8(b1), p[2], p[3],
                           &acc_a, &acc_b);
            }
            if (w < end) {
                uint32_t a = load_word(row_a + 4 * w), b = load_word(row_b + 4 * w);
                smlad_rows(sxtb16(a), sxtb16_ror8(a), sxtb16(b), sxtb16_ror8(b), pairs[2 * w],
                           pairs[2 * w + 1], &acc_a, &acc_b);
            }
        } else {
            /* A word's low nibbles (moved up) and its high nibbles, each split in two. */
            for (w = start; w < end; w++) {
                uint32_t a = load_word(row_a + 4 * w), b = load_word(row_b + 4 * w);
                uint32_t a_even = (a << 4) & 0xf0f0f0f0u, a_odd = a & 0xf0f0f0f0u;
                uint32_t b_even = (b << 4) & 0xf0f0f0f0u, b_odd = b & 0xf0f0f0f0u;
                const uint32_t *p = pairs + 4 * w;
                smlad_rows(sxtb16(a_even), sxtb16_ror8(a_even), sxtb16(b_even),
                           sxtb16_ror8(b_even), p[0], p[1], &acc_a, &acc_b);
                smlad_rows(sxtb16(a_odd), sxtb16_ror8(a_odd), sxtb16(b_odd), sxtb16_ror8(b_odd),
                           p[2], p[3], &acc_a, &acc_b);
            }
        }
        if (m->w_bits == 4) {
            /* 16 times the chunk's sum, exactly (each product is): divided in int32. */
            acc_a /= 16;
            acc_b /= 16;
        }
        sums[0] += acc_a;
        sums[1] += acc_b;
    }
}

/* Codes done .. n - 1 of row i (fewer than a word's: 3 bytes or 7 nibbles at most) times
 * H, for the paired kernel. */
static int64_t row_tail(const qornn_model *m, int32_t i, int32_t done, const int32_t *h) {
    int32_t n = m->hidden, j, first = i * n, acc = 0;
    if (m->w_bits == 8) {
        const int8_t *codes = (const int8_t *)(const void *)(m->w_packed + first);
        for (j = done; j < n; j++) acc += (int32_t)codes[j] * h[j];
    } else {
        /* n is even and `done` a multiple of 8: the tail is whole bytes, two codes each. */
        const uint8_t *bytes = m->w_packed + (first + done) / 2;
        for (j = done; j < n; j += 2, bytes++) {
            uint32_t byte = *bytes;
            acc += ((int32_t)((byte & 15u) ^ 8u) - 8) * h[j] +
                   ((int32_t)((byte >> 4) ^ 8u) - 8) * h[j + 1];
        }
    }
    return acc;
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
            int32_t negative = (m->w_packed[i >> 3] >> (i & 7)) & 1;
            int64_t acc_w = negative ? -(int64_t)next[i] : (int64_t)next[i];
            next[i] = finish(m, &rules, i, acc_w, all ? u_sums[i] : input_sum(m, i, x));
        }
    } else if (m->recurrence == QORNN_ROTATIONS) {
        int all = input_sums(m, x, u_sums);
        /* Pair p: [[a, -b], [b, a]] (h_2p, h_2p+1), 4 multiply-adds. */
        for (i = 0; i < n; i += 2) {
            int64_t a = packed_code(m->w_packed, m->w_bits, i);
            int64_t b = packed_code(m->w_packed, m->w_bits, i + 1);
            int64_t h0 = h[i], h1 = h[i + 1];
            next[i] =
                finish(m, &rules, i, a * h0 - b * h1, all ? u_sums[i] : input_sum(m, i, x));
            next[i + 1] = finish(m, &rules, i + 1, b * h0 + a * h1,
                                 all ? u_sums[i + 1] : input_sum(m, i + 1, x));
        }
    } else if (paired(m)) {
        /* The codes after a row's last whole word, one at a time. */
        int32_t done = n - n % codes_per_word(m);
        /* The input sums first, into next: each unit reads its own before it writes it. */
        int all = input_sums(m, x, next);
        pair_hidden(m, h, state->pairs);
        for (i = 0; i < n; i += 2) {
            /* Rows i and i + 1 together (an odd n's last row with itself). */
            int32_t r = i + 1 < n ? i + 1 : i, k;
            int64_t sums[2];
            paired_rows(m, i, r, state->pairs, sums);
            for (k = 0; k <= r - i; k++) {
                int64_t acc_w = sums[k];
                if (done < n) acc_w += row_tail(m, i + k, done, h);
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
