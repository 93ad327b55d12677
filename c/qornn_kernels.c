/* qornn: the paired kernels of the dense step (qornn_kernels.h): W's and U's 8- and 4-bit
 * codes split into 16-bit pairs and multiplied two at a time (SMLAD on a Cortex-M4). */
#include "qornn_kernels.h"

#include <string.h>

/* The paired kernel for a dense W of 8- or 4-bit codes (hidden codes that fit int16): each
 * 32-bit word of codes is split into two words of two 16-bit codes (SXTB16, with a
 * rotation for the odd bytes), and each multiplies a word of two hidden codes with one
 * SMLAD, two multiply-adds per instruction; rows go four at a time (8-bit codes, rows up to
 * QORNN_FOUR_ROWS_MAX) or two, so that each word of hidden pairs is loaded once for all of
 * them. The hidden codes are laid out once per step in the order the split gives
 * (`qornn_pair_hidden`). 4-bit codes are split as 16 times their value (a nibble moved to
 * the top of its byte), and each chunk's sum divided by 16, exactly. On a Cortex-M with
 * the DSP extension (__ARM_FEATURE_DSP) these are the instructions themselves; elsewhere
 * the same arithmetic in C99, so that the host checks the layout. */
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
int qornn_paired(const qornn_model *m) {
    int fits = m->modrelu || m->act_bits <= 15;
    return m->recurrence == QORNN_DENSE && fits &&
           (m->w_bits == 8 || (m->w_bits == 4 && m->hidden % 2 == 0));
}

/* Codes per 32-bit word of a paired row (8 or 4 bits). */
int32_t qornn_codes_per_word(const qornn_model *m) { return m->w_bits == 8 ? 4 : 8; }

/* H in the order the split of a word gives: 8-bit codes, per 4 units (h0, h2), (h1, h3);
 * 4-bit codes, per 8 units (h0, h4), (h2, h6), (h1, h5), (h3, h7). */
void qornn_pair_hidden(const qornn_model *m, const int32_t *h, uint32_t *pairs) {
    int32_t g, n = m->hidden - m->hidden % qornn_codes_per_word(m);
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
void qornn_paired_rows(const qornn_model *m, int32_t i, int32_t r, const uint32_t *pairs,
                        int64_t sums[2]) {
    int32_t n = m->hidden, words = n / qornn_codes_per_word(m), start, w;
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

/* Rows i .. i + 3 of an 8-bit W times H into sums[0..3], for n <= QORNN_FOUR_ROWS_MAX: the
 * paired kernel four rows at a time, so that each word of hidden pairs is loaded once for
 * four rows (eight SMLAD per word of pairs), then each row's last n mod 4 codes. */
void qornn_byte_rows4(const qornn_model *m, int32_t i, const uint32_t *pairs, const int32_t *h,
                      int32_t sums[4]) {
    int32_t n = m->hidden, words = n / 4, k;
    /* Rows a and b = a + n through one pointer, c and d = c + n through another. */
    const uint8_t *a = m->w_packed + (size_t)i * (size_t)n, *ab = a, *cd = a + 2 * n;
    const uint32_t *end = pairs + 2 * words;
    int32_t acc_a = 0, acc_b = 0, acc_c = 0, acc_d = 0;
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && !defined(__ARM_BIG_ENDIAN)
    /* The same loop written out for the Cortex-M4 (the compiler spills an accumulator
     * otherwise): per word of pairs, one LDRD (post-incremented), four LDR (rows b and d at
     * the register offset n, a and c post-incremented), eight SXTB16 and eight SMLAD: 23
     * instructions with the loop's test for 16 multiply-adds. */
    if (pairs < end) {
        uint32_t p0, p1, word, half;
        __asm__ volatile(
            "1:\n\t"
            "ldrd %[p0], %[p1], [%[pairs]], #8\n\t"
            "ldr %[word], [%[ab], %[n]]\n\t"
            "sxtb16 %[half], %[word]\n\t"
            "smlad %[acc_b], %[half], %[p0], %[acc_b]\n\t"
            "sxtb16 %[half], %[word], ror #8\n\t"
            "smlad %[acc_b], %[half], %[p1], %[acc_b]\n\t"
            "ldr %[word], [%[ab]], #4\n\t"
            "sxtb16 %[half], %[word]\n\t"
            "smlad %[acc_a], %[half], %[p0], %[acc_a]\n\t"
            "sxtb16 %[half], %[word], ror #8\n\t"
            "smlad %[acc_a], %[half], %[p1], %[acc_a]\n\t"
            "ldr %[word], [%[cd], %[n]]\n\t"
            "sxtb16 %[half], %[word]\n\t"
            "smlad %[acc_d], %[half], %[p0], %[acc_d]\n\t"
            "sxtb16 %[half], %[word], ror #8\n\t"
            "smlad %[acc_d], %[half], %[p1], %[acc_d]\n\t"
            "ldr %[word], [%[cd]], #4\n\t"
            "sxtb16 %[half], %[word]\n\t"
            "smlad %[acc_c], %[half], %[p0], %[acc_c]\n\t"
            "sxtb16 %[half], %[word], ror #8\n\t"
            "smlad %[acc_c], %[half], %[p1], %[acc_c]\n\t"
            "cmp %[pairs], %[end]\n\t"
            "bne 1b"
            : [acc_a] "+r"(acc_a), [acc_b] "+r"(acc_b), [acc_c] "+r"(acc_c),
              [acc_d] "+r"(acc_d), [pairs] "+r"(pairs), [ab] "+r"(ab), [cd] "+r"(cd),
              [p0] "=&r"(p0), [p1] "=&r"(p1), [word] "=&r"(word), [half] "=&r"(half)
            : [n] "r"(n), [end] "r"(end)
            : "cc", "memory");
    }
#else
    for (; pairs < end; pairs += 2, ab += 4, cd += 4) {
        uint32_t p0 = pairs[0], p1 = pairs[1];
        uint32_t wa = load_word(ab), wb = load_word(ab + n);
        uint32_t wc = load_word(cd), wd = load_word(cd + n);
        acc_a = smlad(sxtb16_ror8(wa), p1, smlad(sxtb16(wa), p0, acc_a));
        acc_b = smlad(sxtb16_ror8(wb), p1, smlad(sxtb16(wb), p0, acc_b));
        acc_c = smlad(sxtb16_ror8(wc), p1, smlad(sxtb16(wc), p0, acc_c));
        acc_d = smlad(sxtb16_ror8(wd), p1, smlad(sxtb16(wd), p0, acc_d));
    }
#endif
    sums[0] = acc_a;
    sums[1] = acc_b;
    sums[2] = acc_c;
    sums[3] = acc_d;
    if (n % 4) {
        /* The last n mod 4 codes of each row: the first two as a pair (one SMLAD), a third
         * alone. */
        int32_t done = 4 * words, left = n % 4;
        uint32_t tail_pair = pair16(h[done], left > 1 ? h[done + 1] : 0);
        for (k = 0; k < 4; k++) {
            const int8_t *codes = (const int8_t *)(const void *)(a + (size_t)k * (size_t)n);
            sums[k] = smlad(pair16(codes[done], left > 1 ? codes[done + 1] : 0), tail_pair,
                            sums[k]);
            if (left == 3) sums[k] += (int32_t)codes[done + 2] * h[done + 2];
        }
    }
}

/* Codes done .. n - 1 of row i (fewer than a word's: 3 bytes or 7 nibbles at most) times
 * H, for the paired kernel. */
int64_t qornn_row_tail(const qornn_model *m, int32_t i, int32_t done, const int32_t *h) {
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

/* Every row's input sum into `sums` by the paired kernel's split (`qornn_paired_rows`), for U of
 * 8 bits, or of 4 bits with d even (every row then starts on a byte), and 4 <= d <= 64:
 * the inputs as 16-bit pairs in the order the split gives (`qornn_pair_hidden`), each word of a
 * row's codes then two SMLAD (8 bits) or four (4 bits, 16 times the codes, the sum divided
 * by 16 exactly); the codes after the last whole word one at a time. Input codes are within
 * A <= 16 bits, so each product is below 2^22 and a row's 64 of them sum within int32. */
void qornn_paired_input_sums(const qornn_model *m, const int32_t *x, int32_t *sums) {
    uint32_t x_pairs[32];
    int32_t n = m->hidden, d = m->input, per_word = m->u_bits == 8 ? 4 : 8;
    int32_t words = d / per_word, done = words * per_word, i, j, w;
    size_t row_bytes = (size_t)d * (size_t)m->u_bits / 8;
    for (w = 0; w < words; w++) {
        const int32_t *g = x + w * per_word;
        if (per_word == 4) {
            x_pairs[2 * w] = pair16(g[0], g[2]);
            x_pairs[2 * w + 1] = pair16(g[1], g[3]);
        } else {
            x_pairs[4 * w] = pair16(g[0], g[4]);
            x_pairs[4 * w + 1] = pair16(g[2], g[6]);
            x_pairs[4 * w + 2] = pair16(g[1], g[5]);
            x_pairs[4 * w + 3] = pair16(g[3], g[7]);
        }
    }
    for (i = 0; i < n; i++) {
        const uint8_t *row = m->u_packed + (size_t)i * row_bytes;
        int32_t acc = 0;
        if (per_word == 4) {
            for (w = 0; w < words; w++) {
                uint32_t c = load_word(row + 4 * w);
                acc = smlad(sxtb16_ror8(c), x_pairs[2 * w + 1],
                            smlad(sxtb16(c), x_pairs[2 * w], acc));
            }
            for (j = done; j < d; j++) acc += (int32_t)(int8_t)row[j] * x[j];
        } else {
            for (w = 0; w < words; w++) {
                uint32_t c = load_word(row + 4 * w);
                uint32_t even = (c << 4) & 0xf0f0f0f0u, odd = c & 0xf0f0f0f0u;
                const uint32_t *p = x_pairs + 4 * w;
                acc = smlad(sxtb16(even), p[0], acc);
                acc = smlad(sxtb16_ror8(even), p[1], acc);
                acc = smlad(sxtb16(odd), p[2], acc);
                acc = smlad(sxtb16_ror8(odd), p[3], acc);
            }
            acc /= 16;
            /* d is even and `done` a multiple of 8: the tail is whole bytes. */
            for (j = done; j < d; j += 2) {
                uint32_t byte = row[j / 2];
                acc += ((int32_t)((byte & 15u) ^ 8u) - 8) * x[j] +
                       ((int32_t)((byte >> 4) ^ 8u) - 8) * x[j + 1];
            }
        }
        sums[i] = acc;
    }
}
