/* Fuzzing the C library: any bytes become a qornn_model (its int32 fields, then its arrays),
 * which qornn_validate must refuse or accept; an accepted model is stepped three times at
 * the extreme input codes and read out, and its hidden codes must stay in range. Built with
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

/* Returns 1 when the model was accepted (and run). */
static int fuzz_one(const uint8_t *data, size_t size) {
    qornn_model m;
    qornn_state state;
    int32_t buffer[QORNN_STATE_WORDS(MAX_UNITS)], x[MAX_INPUT];
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
    for (t = 0; t < 3; t++) {
        int32_t x_hi = (1 << (m.act_bits - 1)) - 1;
        for (i = 0; i < m.input; i++) x[i] = (t + i) % 2 ? x_hi : -x_hi - 1;
        qornn_step(&m, &state, x);
        for (i = 0; i < m.hidden; i++) {
            int32_t lo = m.modrelu ? -(1 << (m.act_bits - 1)) : 0;
            int32_t hi = m.modrelu ? (1 << (m.act_bits - 1)) - 1 : (1 << m.act_bits) - 1;
            if (state.h[i] < lo || state.h[i] > hi) return -1;
        }
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
            printf("qornn check: FAIL an accepted model left its range (input %ld)\n", runs);
            return 1;
        default:
            break;
        }
    }
    printf("qornn check: PASS (%ld inputs, %ld accepted)\n", runs, accepted);
    return accepted == 0;
}
#endif
