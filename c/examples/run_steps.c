/* Runs QORNN_RUN_STEPS recurrence steps of the exported trace's inputs and nothing else:
 * the difference between the instructions of two such runs (say 1 and 2 steps) is the
 * cost of one step (`make -C c steps-m4 MODEL=DIR`). */
#include <stdio.h>

#include "qornn.h"
#include "qornn_model.h"
#include "qornn_trace.h"

#ifndef QORNN_RUN_STEPS
#define QORNN_RUN_STEPS 1
#endif

static int32_t state_buffer[QORNN_STATE_WORDS(QORNN_HIDDEN)];

int main(void) {
    qornn_state state;
    long t;
    qornn_state_init(&qornn_exported_model, &state, state_buffer,
                     QORNN_STATE_WORDS(QORNN_HIDDEN));
    for (t = 0; t < QORNN_RUN_STEPS; t++)
        qornn_step(&qornn_exported_model, &state,
                   &qornn_trace_input[(t % QORNN_TRACE_STEPS) * QORNN_INPUT]);
    printf("h[0] = %d\n", (int)state.h[0]);
    return 0;
}
