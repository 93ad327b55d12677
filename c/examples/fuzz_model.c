/* Fuzzing the C library: any bytes become a qornn_model (its int32 fields, then its arrays),
 * which qornn_validate must refuse or accept; an accepted model is stepped three times at
 * the extreme input codes and read out, and its hidden codes must be those of a reference
 * step written here from qornn.h's formula in plain int64 (`reference_step`), so every fast
 * path of qornn_step is checked on models no trainer makes. Built with
 * -fsanitize=address,undefined, a report is a crash.
 *
 * With clang, `-DQORNN_LIBFUZZER -fsanitize=fuzzer` makes it a libFuzzer target
 * (LLVMFuzzerTestOneInput). Otherwise (`make -C c check-fuzz`, gcc) main drives it with
 * QORNN_FUZZ_RUNS inputs of its own: a valid model's bytes with 1 to 8 fields set to random
 * or extreme values, and random arrays, so that most inputs reach past the first check.
 * Prints "qornn check: PASS (N inputs, M accepted)". */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qornn.h"

/* The model's int32 fields in the order the bytes set them. */
enum {
    F_VERSION, F_HIDDEN, F_INPUT, F_OUTPUTS, F_W_BITS, F_U_BITS, F_ACT_BITS, F_MODRELU,
    F_HIDDEN_FRAC, F_INPUT_FRAC, F_SHIFT, F_RECURRENCE, F_HADAMARD_BLOCK, F_W_MANTISSA,
    F_W_SHIFT, F_U_MANTISSA, F_U_SHIFT, F_READOUT_BITS, F_READOUT_MANTISSA, F_READOUT_SHIFT,
    F_FLAGS, /* bit 0: W row mantissas, 1: U row mantissas, 2: 32-bit biases, 3: the
              * biases and row mantissas as they come (else brought near their bounds) */
    FIELDS
};

#define MAX_UNITS 16
#define MAX_INPUT 8
#define MAX_OUTPUTS 4
#define ARRAY_BYTES 2048

static uint8_t w_packed[MAX_UNITS * MAX_UNITS], u_packed[MAX_UNITS * MAX_INPUT];
static int64_t bias[MAX_UNITS];
static int32_t bias32[MAX_UNITS], bias_mod[MAX_UNITS];
static uint16_t w_rows[MAX_UNITS], u_rows[MAX_UNITS];
static float readout_weight[MAX_OUTPUTS * MAX_UNITS], readout_bias[MAX_OUTPUTS];
/* Packed codes of up to 16 bits: every bit pattern is a code. */
static uint8_t readout_packed[2 * MAX_OUTPUTS * MAX_UNITS];

static int32_t field(const uint8_t *data, size_t size, int i) {
    uint32_t v = 0;
    size_t k;
    for (k = 0; k < 4; k++) {
        size_t at = 4 * (size_t)i + k;
        v |= (uint32_t)(at < size ? data[at] : 0) << (8 * k);
    }
    return (int32_t)v;
}

/* Fills `out` (len bytes) from the bytes after the fields, cycling; zeros without them. */
static void fill(uint8_t *out, size_t len, const uint8_t *data, size_t size, size_t *at) {
    size_t k, start = 4 * FIELDS;
    for (k = 0; k < len; k++) {
        out[k] = size > start ? data[start + (*at % (size - start))] : 0;
        (*at)++;
    }
}

/* Code `index` of packed k-bit codes (little-endian bit order), sign-extended, bit by bit. */
static int64_t code_at(const uint8_t *packed, int32_t bits, int64_t index) {
    int64_t value = 0, b;
    for (b = 0; b < bits; b++) {
        int64_t bit = index * bits + b;
        value |= (int64_t)((packed[bit / 8] >> (bit % 8)) & 1) << b;
    }
    return value >= (int64_t)1 << (bits - 1) ? value - ((int64_t)1 << bits) : value;
}

/* W_ij of any recurrence: the packed code, diag(s) (I ⊗ H_m) (s_i negative where bit i of
 * w_packed is set, H_m[r][c] = (-1)^popcount(r & c)), or a rotation pair's [[a, -b], [b, a]]. */
static int64_t w_entry(const qornn_model *m, int32_t i, int32_t j) {
    int32_t n = m->hidden;
    if (m->recurrence == QORNN_HADAMARD) {
        int32_t b = m->hadamard_block, r = i % b, c = j % b, parity = 0, v;
        if (i / b != j / b) return 0;
        for (v = r & c; v; v >>= 1) parity ^= v & 1;
        return ((m->w_packed[i / 8] >> (i % 8)) & 1) != parity ? -1 : 1;
    }
    if (m->recurrence == QORNN_ROTATIONS) {
        int32_t p = i - i % 2;
        int64_t a = code_at(m->w_packed, m->w_bits, p), b = code_at(m->w_packed, m->w_bits, p + 1);
        if (j / 2 != i / 2) return 0;
        return i % 2 == 0 ? (j % 2 == 0 ? a : -b) : (j % 2 == 0 ? b : a);
    }
    return code_at(m->w_packed, m->w_bits, (int64_t)i * n + j);
}

/* floor(v / 2^s) without shifting a negative value. */
static int64_t floor_div(int64_t v, int32_t s) {
    int64_t d = (int64_t)1 << s, q = v / d;
    return q * d > v ? q - 1 : q;
}

/* One step of qornn.h's formula, term by term in int64, into `out`. */
static void reference_step(const qornn_model *m, const int32_t *h, const int32_t *x,
                           int32_t *out) {
    int32_t i, j, n = m->hidden, d = m->input;
    int64_t lo = m->modrelu ? -((int64_t)1 << (m->act_bits - 1)) : 0;
    int64_t hi = m->modrelu ? ((int64_t)1 << (m->act_bits - 1)) - 1
                            : ((int64_t)1 << m->act_bits) - 1;
    for (i = 0; i < n; i++) {
        int64_t acc_w = 0, acc_u = 0, num, z, a;
        int32_t u_align = m->shift + m->hidden_frac - m->u_scale.shift - m->input_frac;
        int64_t w_mantissa = m->w_row_mantissas ? m->w_row_mantissas[i] : m->w_scale.mantissa;
        int64_t u_mantissa = m->u_row_mantissas ? m->u_row_mantissas[i] : m->u_scale.mantissa;
        for (j = 0; j < n; j++) acc_w += w_entry(m, i, j) * h[j];
        for (j = 0; j < d; j++) acc_u += code_at(m->u_packed, m->u_bits, (int64_t)i * d + j) * x[j];
        num = acc_w * (w_mantissa << (m->shift - m->w_scale.shift)) +
              acc_u * (u_mantissa << u_align) + (m->bias ? m->bias[i] : m->bias32[i]);
        z = m->shift == 0 ? num : floor_div(num + ((int64_t)1 << (m->shift - 1)), m->shift);
        if (m->modrelu) {
            a = (z < 0 ? -z : z) + m->bias_mod[i];
            if (a < 0) a = 0;
            a = z > 0 ? a : (z < 0 ? -a : 0);
        } else {
            a = z < 0 ? 0 : z;
        }
        out[i] = (int32_t)(a < lo ? lo : (a > hi ? hi : a));
    }
}

/* Returns 1 when the model was accepted (and run). */
static int fuzz_one(const uint8_t *data, size_t size) {
    qornn_model m;
    qornn_state state;
    int32_t buffer[QORNN_STATE_WORDS(MAX_UNITS)], x[MAX_INPUT];
    int32_t expected[MAX_UNITS], next[MAX_UNITS];
    int64_t sums[MAX_OUTPUTS];
    float y[MAX_OUTPUTS];
    size_t at = 0, k;
    int32_t flags = field(data, size, F_FLAGS), t, i;
    memset(&m, 0, sizeof m);
    m.version = field(data, size, F_VERSION);
    m.hidden = field(data, size, F_HIDDEN);
    m.input = field(data, size, F_INPUT);
    m.outputs = field(data, size, F_OUTPUTS);
    m.w_bits = field(data, size, F_W_BITS);
    m.u_bits = field(data, size, F_U_BITS);
    m.act_bits = field(data, size, F_ACT_BITS);
    m.modrelu = field(data, size, F_MODRELU) & 1;
    m.hidden_frac = field(data, size, F_HIDDEN_FRAC);
    m.input_frac = field(data, size, F_INPUT_FRAC);
    m.shift = field(data, size, F_SHIFT);
    m.recurrence = field(data, size, F_RECURRENCE);
    m.hadamard_block = field(data, size, F_HADAMARD_BLOCK);
    m.w_scale.mantissa = field(data, size, F_W_MANTISSA);
    m.w_scale.shift = field(data, size, F_W_SHIFT);
    m.u_scale.mantissa = field(data, size, F_U_MANTISSA);
    m.u_scale.shift = field(data, size, F_U_SHIFT);
    m.readout_bits = field(data, size, F_READOUT_BITS);
    m.readout_scale.mantissa = field(data, size, F_READOUT_MANTISSA);
    m.readout_scale.shift = field(data, size, F_READOUT_SHIFT);
    /* The arrays are fixed buffers: a model larger than they hold is only validated, with
     * no arrays (which it must refuse), since its sizes would index past them. */
    if (m.hidden < 1 || m.hidden > MAX_UNITS || m.input < 1 || m.input > MAX_INPUT ||
        m.outputs < 1 || m.outputs > MAX_OUTPUTS)
        return qornn_validate(&m) == QORNN_OK ? -1 : 0;
    fill(w_packed, sizeof w_packed, data, size, &at);
    fill(u_packed, sizeof u_packed, data, size, &at);
    fill((uint8_t *)bias, sizeof bias, data, size, &at);
    fill((uint8_t *)bias32, sizeof bias32, data, size, &at);
    fill((uint8_t *)bias_mod, sizeof bias_mod, data, size, &at);
    fill((uint8_t *)w_rows, sizeof w_rows, data, size, &at);
    fill((uint8_t *)u_rows, sizeof u_rows, data, size, &at);
    fill(readout_packed, sizeof readout_packed, data, size, &at);
    if (!(flags & 8))
        for (k = 0; k < MAX_UNITS; k++) {
            bias[k] /= 256; /* |B| < 2^55: within the bound, most of the time */
            w_rows[k] = (uint16_t)(1 + w_rows[k] % 4096);
            u_rows[k] = (uint16_t)(1 + u_rows[k] % 4096);
        }
    for (k = 0; k < MAX_OUTPUTS * MAX_UNITS; k++)
        readout_weight[k] = (float)((int8_t)w_packed[k % sizeof w_packed]) / 16.0f;
    for (k = 0; k < MAX_OUTPUTS; k++) readout_bias[k] = (float)(int8_t)u_packed[k] / 8.0f;
    m.w_packed = w_packed;
    m.u_packed = u_packed;
    if (flags & 4)
        m.bias32 = bias32;
    else
        m.bias = bias;
    m.bias_mod = bias_mod;
    m.w_row_mantissas = (flags & 1) ? w_rows : NULL;
    m.u_row_mantissas = (flags & 2) ? u_rows : NULL;
    m.readout_weight = readout_weight;
    m.readout_packed = readout_packed;
    m.readout_bias = readout_bias;
    if (qornn_validate(&m) != QORNN_OK) return 0;
    if (qornn_state_init(&m, &state, buffer, QORNN_STATE_WORDS(MAX_UNITS)) != QORNN_OK) return -1;
    memset(expected, 0, sizeof expected);
    for (t = 0; t < 3; t++) {
        int32_t x_hi = (1 << (m.act_bits - 1)) - 1;
        for (i = 0; i < m.input; i++) x[i] = (t + i) % 2 ? x_hi : -x_hi - 1;
        reference_step(&m, expected, x, next);
        memcpy(expected, next, sizeof next);
        qornn_step(&m, &state, x);
        for (i = 0; i < m.hidden; i++)
            if (state.h[i] != expected[i]) return -1;
    }
    if (m.readout_bits) qornn_readout_sums(&m, &state, sums);
    qornn_readout(&m, &state, y);
    return 1;
}

#ifdef QORNN_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fuzz_one(data, size) < 0) __builtin_trap();
    return 0;
}
#else
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static void put(uint8_t *data, int i, int32_t v) {
    int k;
    for (k = 0; k < 4; k++) data[4 * i + k] = (uint8_t)((uint32_t)v >> (8 * k));
}

#ifndef QORNN_FUZZ_RUNS
#define QORNN_FUZZ_RUNS 1000000
#endif

int main(void) {
    static const int32_t extremes[] = {0, 1, -1, 2, 16, 62, 63, 64, 4096, 4097, INT32_MAX,
                                       INT32_MIN, INT32_MAX - 1, INT32_MIN + 1};
    static const int32_t base[FIELDS] = {QORNN_VERSION, 8, 3, 2, 4, 4, 8, 1, 4, 4, 12,
                                         QORNN_DENSE, 0, 2048, 12, 2048, 12, 8, 1024, 10, 0};
    static uint8_t data[4 * FIELDS + ARRAY_BYTES];
    long runs, accepted = 0;
    size_t k;
    for (runs = 0; runs < QORNN_FUZZ_RUNS; runs++) {
        int changes = 1 + (int)(next_random() % 8), c, f;
        for (f = 0; f < FIELDS; f++) put(data, f, base[f]);
        for (k = 4 * FIELDS; k < sizeof data; k++) data[k] = (uint8_t)next_random();
        /* Now and then a recurrence that needs structure: Hadamard blocks, rotations. */
        if (runs % 4 == 1) {
            put(data, F_RECURRENCE, QORNN_HADAMARD);
            put(data, F_HADAMARD_BLOCK, 1 << (1 + next_random() % 3));
        } else if (runs % 4 == 2) {
            put(data, F_RECURRENCE, QORNN_ROTATIONS);
        }
        put(data, F_FLAGS, (int32_t)(next_random() % 16));
        /* Now and then every shift moved by the same amount (their alignments kept), ReLU or
         * modReLU at 2 to 8 bits, 64-bit biases: large S with small A, the rescaling's far
         * end, where biases up to 2^55 saturate the codes. */
        if (runs % 8 == 3) {
            int32_t by = (int32_t)(next_random() % 51);
            put(data, F_SHIFT, base[F_SHIFT] + by);
            put(data, F_W_SHIFT, base[F_W_SHIFT] + by);
            put(data, F_U_SHIFT, base[F_U_SHIFT] + by);
            put(data, F_MODRELU, (int32_t)(next_random() % 2));
            put(data, F_ACT_BITS, 2 + (int32_t)(next_random() % 7));
            put(data, F_FLAGS, (int32_t)(next_random() % 4));
        }
        for (c = 0; c < changes; c++) {
            f = (int)(next_random() % FIELDS);
            put(data, f,
                next_random() % 2 ? extremes[next_random() % (sizeof extremes / sizeof extremes[0])]
                                  : (int32_t)(next_random() % 80) - 8);
        }
        switch (fuzz_one(data, sizeof data)) {
        case 1:
            accepted++;
            break;
        case -1:
            printf("qornn check: FAIL an accepted model's hidden codes differ from the "
                   "reference step's (input %ld)\n",
                   runs);
            return 1;
        default:
            break;
        }
    }
    printf("qornn check: PASS (%ld inputs, %ld accepted)\n", runs, accepted);
    return accepted == 0;
}
#endif
