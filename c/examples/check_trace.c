/* Checks the library against the reference trace of a model exported by
 * `qornn export --c DIR` (DIR/qornn_model.h, DIR/qornn_trace.h): the input codes from
 * the float inputs, every hidden code after every step, the integer read-out sums (when
 * the read-out is quantized) and the outputs. Prints one verdict line,
 * "qornn check: PASS ..." or "qornn check: FAIL ...": QEMU's semihosting exit status is 0
 * whatever main returns, so the Makefile reads this line. */
#include <stdio.h>

#include "qornn.h"
#include "qornn_model.h"
#include "qornn_trace.h"

static int32_t state_buffer[QORNN_STATE_WORDS(QORNN_HIDDEN)];
static int32_t input_codes[QORNN_INPUT];
static float outputs[QORNN_OUTPUTS];

static int fail(const char *what, long step, long index, long long found, long long expected) {
    printf("qornn check: FAIL %s at step %ld, index %ld: %lld, expected %lld\n", what, step,
           index, found, expected);
    return 1;
}

static float absolute(float v) { return v < 0 ? -v : v; }

int main(void) {
    const qornn_model *model = &qornn_exported_model;
    qornn_state state;
    long t, i;
    qornn_status problem = qornn_validate(model);
    if (problem != QORNN_OK) {
        printf("qornn check: FAIL qornn_validate returned %d\n", (int)problem);
        return 1;
    }
    if (qornn_state_init(model, &state, state_buffer, QORNN_STATE_WORDS(QORNN_HIDDEN)) !=
        QORNN_OK) {
        printf("qornn check: FAIL qornn_state_init refused the state buffer\n");
        return 1;
    }
    for (t = 0; t < QORNN_TRACE_STEPS; t++) {
        qornn_quantize_input(model, &qornn_trace_x[t * QORNN_INPUT], input_codes);
        for (i = 0; i < QORNN_INPUT; i++)
            if (input_codes[i] != qornn_trace_input[t * QORNN_INPUT + i])
                return fail("input code", t, i, input_codes[i],
                            qornn_trace_input[t * QORNN_INPUT + i]);
        qornn_step(model, &state, input_codes);
        for (i = 0; i < QORNN_HIDDEN; i++)
            if (state.h[i] != qornn_trace_hidden[t * QORNN_HIDDEN + i])
                return fail("hidden code", t, i, state.h[i],
                            qornn_trace_hidden[t * QORNN_HIDDEN + i]);
    }
#if QORNN_READOUT_BITS > 0
    {
        int64_t sums[QORNN_OUTPUTS];
        if (qornn_readout_sums(model, &state, sums) != QORNN_OK)
            return fail("read-out sums", t, 0, 0, 0);
        for (i = 0; i < QORNN_OUTPUTS; i++)
            if (sums[i] != qornn_trace_sums[i])
                return fail("read-out sum", t, i, sums[i], qornn_trace_sums[i]);
    }
#endif
    qornn_readout(model, &state, outputs);
    for (i = 0; i < QORNN_OUTPUTS; i++) {
        float expected = qornn_trace_output[i];
        if (absolute(outputs[i] - expected) > 1e-4f * (1.0f + absolute(expected))) {
            printf("qornn check: FAIL output %ld: %d.%06d, expected %d.%06d\n", i,
                   (int)outputs[i], (int)(absolute(outputs[i] - (float)(int)outputs[i]) * 1e6f),
                   (int)expected, (int)(absolute(expected - (float)(int)expected) * 1e6f));
            return 1;
        }
    }
    printf("qornn check: PASS (%d steps, %d units, %d-bit W, %d-bit U, A = %d)\n",
           QORNN_TRACE_STEPS, QORNN_HIDDEN, QORNN_W_BITS, QORNN_U_BITS, QORNN_ACT_BITS);
    return 0;
}
