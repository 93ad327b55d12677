/* qornn_validate against hostile field values (issue 22, defect 3): every field the
 * arithmetic uses is set, one at a time, to the extremes of its type. Each such model must
 * be refused, and checking it must itself be free of undefined behaviour (this program is
 * built with -fsanitize=undefined and stops at the first report). The untouched model is
 * accepted and stepped once. Prints "qornn check: PASS" when every case held. */
#include <math.h>
#include <stdio.h>

#include "qornn.h"

static const uint8_t w_packed[1] = {0x21};      /* 2 x 2 codes at 2 bits: 1, 0, -2, 0 */
static const uint8_t u_packed[1] = {0x01};      /* 2 x 1 codes: 1, 0 */
static const int64_t bias[2] = {3, -3};
static const int32_t bias_mod[2] = {0, 0};
static const float readout_weight[2] = {0.5f, -0.25f};
static const uint8_t readout_packed[4] = {0x01, 0x00, 0xff, 0xff}; /* 2 codes, R <= 16 */
static float readout_bias[1] = {0.125f};
static float bad_weight[2] = {0.5f, 0.0f};

static qornn_model base(void) {
    qornn_model m = {0};
    m.version = QORNN_VERSION;
    m.hidden = 2;
    m.input = 1;
    m.outputs = 1;
    m.w_bits = 2;
    m.u_bits = 2;
    m.act_bits = 8;
    m.hidden_frac = 4;
    m.input_frac = 4;
    m.shift = 8;
    m.w_scale.mantissa = 2048;
    m.w_scale.shift = 8;
    m.u_scale.mantissa = 2048;
    m.u_scale.shift = 8;
    m.w_packed = w_packed;
    m.u_packed = u_packed;
    m.bias = bias;
    m.bias_mod = bias_mod;
    m.readout_weight = readout_weight;
    m.readout_packed = readout_packed;
    m.readout_scale.mantissa = 1024;
    m.readout_scale.shift = 10;
    m.readout_bias = readout_bias;
    return m;
}

typedef void (*mutation)(qornn_model *m, int32_t v);
#define FIELD(name, field) \
    static void set_##name(qornn_model *m, int32_t v) { m->field = v; }
FIELD(hidden_frac, hidden_frac)
FIELD(input_frac, input_frac)
FIELD(shift, shift)
FIELD(w_shift, w_scale.shift)
FIELD(u_shift, u_scale.shift)
FIELD(w_mantissa, w_scale.mantissa)
FIELD(u_mantissa, u_scale.mantissa)
FIELD(act_bits, act_bits)
FIELD(u_bits, u_bits)
FIELD(w_bits, w_bits)
FIELD(hidden, hidden)
FIELD(input, input)
FIELD(outputs, outputs)
FIELD(hadamard_block, hadamard_block)
FIELD(recurrence, recurrence)
FIELD(version, version)
FIELD(readout_bits, readout_bits)
FIELD(readout_mantissa, readout_scale.mantissa)
FIELD(readout_shift, readout_scale.shift)

int main(void) {
    static const struct {
        const char *name;
        mutation set;
        int quantized_readout;
    } fields[] = {
        {"hidden_frac", set_hidden_frac, 0},   {"input_frac", set_input_frac, 0},
        {"shift", set_shift, 0},               {"w_shift", set_w_shift, 0},
        {"u_shift", set_u_shift, 0},           {"w_mantissa", set_w_mantissa, 0},
        {"u_mantissa", set_u_mantissa, 0},     {"act_bits", set_act_bits, 0},
        {"u_bits", set_u_bits, 0},             {"w_bits", set_w_bits, 0},
        {"hidden", set_hidden, 0},             {"input", set_input, 0},
        {"outputs", set_outputs, 0},           {"hadamard_block", set_hadamard_block, 0},
        {"readout_bits", set_readout_bits, 1}, {"readout_mantissa", set_readout_mantissa, 1},
        {"readout_shift", set_readout_shift, 1}, {"recurrence", set_recurrence, 0},
        {"version", set_version, 0},
    };
    static const int32_t extremes[] = {INT32_MAX, INT32_MIN, INT32_MAX - 1, INT32_MIN + 1};
    int failures = 0;
    size_t f, e;
    int32_t buffer[QORNN_STATE_WORDS(2)];
    int32_t x[1] = {7};
    float y[1];
    qornn_state state;
    qornn_model m = base();
    if (qornn_validate(&m) != QORNN_OK) {
        printf("the untouched model was refused: %d\n", qornn_validate(&m));
        failures++;
    }
    if (qornn_state_init(&m, &state, buffer, 3) != QORNN_BAD_BUFFER) {
        printf("a state buffer of 3 words for 2 units was accepted\n");
        failures++;
    }
    qornn_state_init(&m, &state, buffer, QORNN_STATE_WORDS(2));
    qornn_step(&m, &state, x);
    qornn_readout(&m, &state, y);
    for (f = 0; f < sizeof fields / sizeof fields[0]; f++)
        for (e = 0; e < sizeof extremes / sizeof extremes[0]; e++) {
            int status;
            m = base();
            if (fields[f].quantized_readout) m.readout_bits = 8;
            fields[f].set(&m, extremes[e]);
            status = qornn_validate(&m);
            if (status == QORNN_OK) {
                printf("%s = %ld was accepted\n", fields[f].name, (long)extremes[e]);
                failures++;
            }
        }
    {
        /* Row mantissas outside 1..4096, and a rotation pair (1, -2) at 2 bits, whose -2
         * has no 2-bit negation. */
        static const uint8_t bad_pair[1] = {0x09};
        static const uint16_t zero_row[2] = {2048, 0}, wide_row[2] = {4097, 2048};
        const uint16_t *rows[2] = {zero_row, wide_row};
        for (e = 0; e < 2; e++) {
            m = base();
            m.w_row_mantissas = rows[e];
            if (qornn_validate(&m) != QORNN_BAD_MANTISSA) {
                printf("W row mantissas %u, %u were accepted\n", rows[e][0], rows[e][1]);
                failures++;
            }
            m = base();
            m.u_row_mantissas = rows[e];
            if (qornn_validate(&m) != QORNN_BAD_MANTISSA) {
                printf("U row mantissas %u, %u were accepted\n", rows[e][0], rows[e][1]);
                failures++;
            }
        }
        m = base();
        m.recurrence = QORNN_ROTATIONS;
        m.w_packed = bad_pair;
        if (qornn_validate(&m) != QORNN_BAD_ROTATION) {
            printf("a rotation code of -2 at 2 bits was accepted\n");
            failures++;
        }
    }
    m = base();
    bad_weight[1] = INFINITY;
    m.readout_weight = bad_weight;
    if (qornn_validate(&m) != QORNN_BAD_READOUT) {
        printf("an infinite read-out weight was accepted\n");
        failures++;
    }
    m = base();
    readout_bias[0] = NAN;
    if (qornn_validate(&m) != QORNN_BAD_READOUT) {
        printf("a NaN read-out bias was accepted\n");
        failures++;
    }
    printf("qornn check: %s\n", failures == 0 ? "PASS" : "FAIL");
    return failures != 0;
}
