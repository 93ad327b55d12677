/* qornn: the dense step's paired kernels (qornn_kernels.c), internal to the library:
 * qornn.c calls them, an application does not. */
#ifndef QORNN_KERNELS_H
#define QORNN_KERNELS_H

#include "qornn.h"

/* The longest row whose whole sum the four-row kernel keeps in int32: 256 codes in whole
 * words and 3 after them, each product below 2^22 (paired_rows), 259 * 2^22 < 2^31. */
#define QORNN_FOUR_ROWS_MAX 259

/* Whether the paired kernel runs W (dense, 8-bit codes or 4-bit ones with n even, hidden
 * codes within int16). */
int qornn_paired(const qornn_model *m);

/* Codes per 32-bit word of a paired row (8 or 4 bits). */
int32_t qornn_codes_per_word(const qornn_model *m);

/* H (n codes) as 16-bit pairs in the order the split of a word of codes gives. */
void qornn_pair_hidden(const qornn_model *m, const int32_t *h, uint32_t *pairs);

/* Rows i and r of W times H from its pairs into sums[0], sums[1] (whole words of codes). */
void qornn_paired_rows(const qornn_model *m, int32_t i, int32_t r, const uint32_t *pairs,
                       int64_t sums[2]);

/* Rows i .. i + 3 of an 8-bit W times H into sums[0..3], whole rows, for
 * n <= QORNN_FOUR_ROWS_MAX. */
void qornn_byte_rows4(const qornn_model *m, int32_t i, const uint32_t *pairs, const int32_t *h,
                      int32_t sums[4]);

/* Row i's codes from `done` (after its last whole word) to n - 1 times H. */
int64_t qornn_row_tail(const qornn_model *m, int32_t i, int32_t done, const int32_t *h);

/* Every row's input sum into `sums`, for U of 8 bits or of 4 bits with d even, and
 * 4 <= d <= 64. */
void qornn_paired_input_sums(const qornn_model *m, const int32_t *x, int32_t *sums);

#endif /* QORNN_KERNELS_H */
