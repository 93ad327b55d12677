/* A portable C port of the integer QORNN recurrence (docs/format.md), checked against
 * the reference trace of a header written by `qornn export --c DIR`:
 *     cc -I DIR -o check c/qornn.c && ./check
 * prints "trace ok" and exits 0 when every hidden code and the read-out match. */
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include "qornn_model.h"

static int32_t code(const uint8_t *packed, int bits, int index) {
    int bit = index * bits, byte = bit / 8, offset = bit % 8;
    uint32_t word = packed[byte];
    if (offset + bits > 8) word |= (uint32_t)packed[byte + 1] << 8;
    uint32_t raw = (word >> offset) & ((1u << bits) - 1);
    return (int32_t)(raw << (32 - bits)) >> (32 - bits); /* sign-extend */
}

static void step(const int32_t *h, const int32_t *x, int32_t *out) {
    const int n = QORNN_HIDDEN, d = QORNN_INPUT;
    const int64_t lo = QORNN_MODRELU ? -(1 << (QORNN_ACT_BITS - 1)) : 0;
    const int64_t hi = QORNN_MODRELU ? (1 << (QORNN_ACT_BITS - 1)) - 1 : (1 << QORNN_ACT_BITS) - 1;
    for (int i = 0; i < n; i++) {
        int64_t acc_w = 0, acc_u = 0;
        for (int j = 0; j < n; j++) acc_w += (int64_t)code(qornn_w_packed, QORNN_WEIGHT_BITS, i * n + j) * h[j];
        for (int j = 0; j < d; j++) acc_u += (int64_t)code(qornn_u_packed, QORNN_WEIGHT_BITS, i * d + j) * x[j];
        /* Multiplications by powers of two: left shifts of negative values are undefined in C. */
        int64_t num = acc_w * QORNN_W_MANTISSA * ((int64_t)1 << (QORNN_SHIFT - QORNN_W_SHIFT))
                    + acc_u * QORNN_U_MANTISSA * ((int64_t)1 << (QORNN_SHIFT + QORNN_HIDDEN_FRAC - QORNN_U_SHIFT - QORNN_INPUT_FRAC))
                    + qornn_bias[i];
        /* Round half up; >> of a negative value is arithmetic on every compiler we know. */
        int64_t z = (num + ((int64_t)1 << (QORNN_SHIFT - 1))) >> QORNN_SHIFT;
        int64_t a;
        if (QORNN_MODRELU) {
            int64_t m = llabs(z) + qornn_bias_mod[i];
            a = m < 0 ? 0 : (z > 0 ? m : (z < 0 ? -m : 0));
        } else {
            a = z < 0 ? 0 : z;
        }
        out[i] = (int32_t)(a < lo ? lo : (a > hi ? hi : a));
    }
}

int main(void) {
    int32_t h[QORNN_HIDDEN] = {0}, next[QORNN_HIDDEN];
    for (int t = 0; t < QORNN_TRACE_STEPS; t++) {
        step(h, &qornn_trace_input[t * QORNN_INPUT], next);
        for (int i = 0; i < QORNN_HIDDEN; i++) {
            h[i] = next[i];
            if (h[i] != qornn_trace_hidden[t * QORNN_HIDDEN + i]) {
                printf("mismatch at step %d unit %d: %d vs %d\n", t, i, h[i], qornn_trace_hidden[t * QORNN_HIDDEN + i]);
                return 1;
            }
        }
    }
    for (int i = 0; i < QORNN_OUTPUTS; i++) {
        float y = qornn_readout_bias[i];
        for (int j = 0; j < QORNN_HIDDEN; j++) y += qornn_readout_weight[i * QORNN_HIDDEN + j] * (float)h[j] * ldexpf(1.0f, -QORNN_HIDDEN_FRAC);
        if (fabsf(y - qornn_trace_output[i]) > 1e-4f * (1.0f + fabsf(y))) {
            printf("read-out %d: %g vs %g\n", i, y, qornn_trace_output[i]);
            return 1;
        }
    }
    printf("trace ok\n");
    return 0;
}
