/* One streaming step of a causal Conv-TasNet, k encoder hops per call, in plain C.
 *
 * Built on first use by local/native_step.py (`cc -O3 -march=native -fopenmp-simd`) and called
 * through ctypes with the weights StreamStep (local/streaming.py) has already folded: this file
 * holds no model logic of its own beyond the arithmetic of each layer, in the same order.
 *
 * Why it exists: at one hop per call the TorchScript step spends most of its time on the
 * ~900 small operator calls, not on arithmetic. Here a call is one function; the work is the
 * matrix-vector products (every weight is read once per call, so memory bandwidth is the floor)
 * plus a few passes over vectors of 512 floats. With k > 1 hops each weight vector is reused,
 * from a register, for a tile of frames (see `linear`).
 *
 * Layout: every activation is frames-major, (k, channels); the depthwise convolution keeps
 * each block's last (P - 1) * dilation + 1 frames in a ring buffer (its causal left context).
 *
 * Weight storage (one build each): float32 by default; with -DNATIVE_WEIGHTS_FP16 every matrix is
 * stored as _Float16, half the bytes to read per call, widened to float32 as it is loaded; with
 * -DNATIVE_WEIGHTS_INT8 as int8 with a float scale per row, a quarter of the bytes, multiplied
 * with int16 inputs in integer arithmetic (see `linear`); with -DNATIVE_WEIGHTS_INT12 as 12-bit
 * integers with a float scale per row (three eighths of the bytes), each split into a signed high
 * byte and an unsigned low nibble, q = 16 * hi + lo, the two parts multiplied like the int8 build's.
 * Biases, norms and depthwise taps stay float32 in every build.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(NATIVE_WEIGHTS_FP16)
typedef _Float16 wtype;
#elif defined(NATIVE_WEIGHTS_INT8) || defined(NATIVE_WEIGHTS_INT12)
#define NATIVE_INTEGER_WEIGHTS
typedef int8_t wtype; /* with a float scale per row (int12: the high byte; the low nibbles apart) */
/* Two int16 as the int32 lane that vpmaddwd reads them from (memory order: the first is the low half). */
static inline int32_t pack_pair(int16_t lo, int16_t hi) {
    const int16_t two[2] = {lo, hi};
    int32_t v;
    memcpy(&v, two, sizeof v);
    return v;
}
#else
typedef float wtype;
#endif

/* The vector types of this build: VW floats, a weight vector loaded (widened from fp16) from
 * memory, and for the integer builds VW int32 lanes, each holding two int16 (vint). GCC 12 left the
 * fp16 widening scalar in a plain loop (vcvtsh2ss, 15 ms per frame instead of 0.55-0.79), and
 * -std=c11 forbids contracting a * b + c into an FMA, so both are spelt out: AVX-512 (16 floats;
 * int8 needs AVX512BW, and uses VNNI when present), AVX2 + FMA (+ F16C for fp16 weights, AVX-VNNI
 * when present: 8), else GCC's generic vectors of 4 (SSE or NEON width: any other CPU; the
 * compiler picks its instructions). */
#if defined(__AVX512F__) && (!defined(NATIVE_INTEGER_WEIGHTS) || defined(__AVX512BW__))
#include <immintrin.h>
#define VW 16
typedef __m512 vfloat;
static inline vfloat vload(const float *x) { return _mm512_loadu_ps(x); }
static inline void vstore(float *y, vfloat v) { _mm512_storeu_ps(y, v); }
static inline vfloat vset1(float s) { return _mm512_set1_ps(s); }
static inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm512_fmadd_ps(a, b, c); }
#if defined(NATIVE_WEIGHTS_FP16)
static inline vfloat vloadw(const wtype *w) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w)); }
#elif defined(NATIVE_INTEGER_WEIGHTS)
typedef __m512i vint;
static inline vint vint_zero(void) { return _mm512_setzero_si512(); }
static inline vint vint_pairs(const wtype *w) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)w)); }
/* 2 * VW bytes of two steps' low nibbles (see `linear`) as int16: the even step's are `& 15`, the odd step's `>> 4` */
static inline vint vint_nibbles(const uint8_t *b) { return _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)b)); }
static inline vint vint_low_nibbles(vint v) { return _mm512_and_si512(v, _mm512_set1_epi16(15)); }
static inline vint vint_high_nibbles(vint v) { return _mm512_srli_epi16(v, 4); }
static inline vint vint_set1(int32_t pair) { return _mm512_set1_epi32(pair); }
#if defined(__AVX512VNNI__)
static inline vint vint_dot(vint w, vint x, vint acc) { return _mm512_dpwssd_epi32(acc, w, x); }
#else
static inline vint vint_dot(vint w, vint x, vint acc) { return _mm512_add_epi32(acc, _mm512_madd_epi16(w, x)); }
#endif
static inline vfloat vint_float(vint v) { return _mm512_cvtepi32_ps(v); }
#else
static inline vfloat vloadw(const wtype *w) { return _mm512_loadu_ps(w); }
#endif
#elif defined(__AVX2__) && defined(__FMA__) && (!defined(NATIVE_WEIGHTS_FP16) || defined(__F16C__))
#include <immintrin.h>
#define VW 8
typedef __m256 vfloat;
static inline vfloat vload(const float *x) { return _mm256_loadu_ps(x); }
static inline void vstore(float *y, vfloat v) { _mm256_storeu_ps(y, v); }
static inline vfloat vset1(float s) { return _mm256_set1_ps(s); }
static inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm256_fmadd_ps(a, b, c); }
#if defined(NATIVE_WEIGHTS_FP16)
static inline vfloat vloadw(const wtype *w) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w)); }
#elif defined(NATIVE_INTEGER_WEIGHTS)
typedef __m256i vint;
static inline vint vint_zero(void) { return _mm256_setzero_si256(); }
static inline vint vint_pairs(const wtype *w) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)); }
static inline vint vint_nibbles(const uint8_t *b) { return _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)b)); }
static inline vint vint_low_nibbles(vint v) { return _mm256_and_si256(v, _mm256_set1_epi16(15)); }
static inline vint vint_high_nibbles(vint v) { return _mm256_srli_epi16(v, 4); }
static inline vint vint_set1(int32_t pair) { return _mm256_set1_epi32(pair); }
#if defined(__AVXVNNI__)
static inline vint vint_dot(vint w, vint x, vint acc) { return _mm256_dpwssd_avx_epi32(acc, w, x); }
#else
static inline vint vint_dot(vint w, vint x, vint acc) { return _mm256_add_epi32(acc, _mm256_madd_epi16(w, x)); }
#endif
static inline vfloat vint_float(vint v) { return _mm256_cvtepi32_ps(v); }
#else
static inline vfloat vloadw(const wtype *w) { return _mm256_loadu_ps(w); }
#endif
#else
#define VW 4
typedef float vfloat __attribute__((vector_size(VW * sizeof(float))));
static inline vfloat vload(const float *x) { vfloat v; memcpy(&v, x, sizeof v); return v; }
static inline void vstore(float *y, vfloat v) { memcpy(y, &v, sizeof v); }
static inline vfloat vset1(float s) { return (vfloat){0} + s; }
static inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return a * b + c; }
#if defined(NATIVE_INTEGER_WEIGHTS)
typedef int32_t vint __attribute__((vector_size(VW * sizeof(int32_t))));
static inline vint vint_zero(void) { return (vint){0}; }
static inline vint vint_set1(int32_t pair) { return (vint){0} + pair; }
static inline vint vint_pairs(const wtype *w) {
    vint v;
    for (int i = 0; i < VW; ++i) v[i] = pack_pair(w[2 * i], w[2 * i + 1]);
    return v;
}
static inline vint vint_nibbles(const uint8_t *b) { /* each byte in its own int16, as the vector builds */
    vint v;
    for (int i = 0; i < VW; ++i) v[i] = pack_pair(b[2 * i], b[2 * i + 1]);
    return v;
}
static inline vint vint_low_nibbles(vint v) { return v & 0x000F000F; }
static inline vint vint_high_nibbles(vint v) { return (v >> 4) & 0x000F000F; }
static inline vint vint_dot(vint w, vint x, vint acc) { /* as vpmaddwd: each lane's two int16 products */
    for (int i = 0; i < VW; ++i)
        acc[i] += (int32_t)(int16_t)w[i] * (int16_t)x[i] + (int32_t)(int16_t)(w[i] >> 16) * (int16_t)(x[i] >> 16);
    return acc;
}
static inline vfloat vint_float(vint v) { return __builtin_convertvector(v, vfloat); }
#else
static inline vfloat vloadw(const wtype *w) {
    vfloat v;
    for (int i = 0; i < VW; ++i) v[i] = (float)w[i];
    return v;
}
#endif
#endif

/* Rows per panel of a stored weight matrix (NativeStreamStep packs them so). */
int64_t panel_rows(void) { return VW; }

/* This build's weight storage, as local/native_step.py's WEIGHTS numbers it (the loader checks it
 * against what it asked for): 0 float32, 1 fp16, 2 int8, 3 int12. */
int64_t weight_storage(void) {
#if defined(NATIVE_WEIGHTS_FP16)
    return 1;
#elif defined(NATIVE_WEIGHTS_INT8)
    return 2;
#elif defined(NATIVE_WEIGHTS_INT12)
    return 3;
#else
    return 0;
#endif
}

enum { NORM_CLN = 0, NORM_CGLN = 1, NORM_BN = 2 };
enum { ACT_LINEAR = 0, ACT_RELU = 1, ACT_SIGMOID = 2, ACT_SOFTMAX = 3 };

typedef struct {
    int64_t kind, affine, sums_index;
    const float *gamma, *beta;   /* cLN / cgLN affine part (when affine) */
    const float *scale, *shift;  /* BN: x * scale + shift (gamma and beta included when affine) */
} Norm;

/* A weight matrix in panels (see `linear`), its per-row scale in the integer and fp16 builds and
 * its low nibbles in the int12 build (else NULL). fp16 rows are stored over their largest
 * magnitude: that weight, the one with the largest rounding error, becomes exact (+-1), and a row
 * of small weights stays out of fp16's subnormal range. On a trained causal demo model the
 * folded matrices stored as they are gave 76.9 dB of output SNR, over a power of two per row
 * 76.9 dB, over random scales per row 76.5-77.2 dB, over their largest magnitude 80.4 dB. */
typedef struct {
    const wtype *w;
    const float *scale;
    const uint8_t *lo;
} Mat;

typedef struct {
    int64_t dilation, taps, out_rows, out_offset, slope1_n, slope2_n, ring, ring_offset;
    Mat in_w, out_w;
    const float *in_b, *slope1, *dw_w, *dw_b, *slope2, *out_b;
    Norm norm1, norm2;
} Block;

typedef struct {
    int64_t N, L, hop, B, H, Sc, n_blocks, n_src, enc_act, mask_act, mask_slope_n, n_sums, ring_total;
    const float *enc_w_t; /* (L, N): the encoder's filters, transposed, float32 in every build */
    const float *dec_w;   /* (N, L): the decoder's filters, float32 in every build */
    Mat bott_w, mask_w;
    const float *bott_b, *mask_slope, *mask_b;
    Norm norm0;
    const Block *blocks;
} Model;

/* Weight matrices are stored in panels of VW rows, each panel column-major: W[o, j] of an (R, C)
 * matrix is at ((o / VW) * C + j) * VW + o % VW, the rows padded to whole panels with zeros. A
 * frame's VW outputs are then one vector sum of C weight vectors scaled by the input's C values:
 * no horizontal sums, which took as long as the products for the 128-column matrices, and a
 * panel's weights are read once for a tile of frames.
 *
 * The int8 build stores columns in pairs instead, W[o, 2q + e] at (((o / VW) * Q + q) * VW + o % VW)
 * * 2 + e (Q = C / 2 rounded up, an odd C padded with a zero column), and multiplies them with the
 * input quantised to int16 (one scale per frame) in int32, two products per lane per instruction
 * (vpdpwssd / vpmaddwd): widening int8 to float and multiplying there cost three instructions
 * per 16 weights, and that build was bound by them (0.30 ms of arithmetic per frame for 5 MB
 * read), not by memory. int16 inputs lose nothing that int8 weights keep.
 *
 * The int12 build stores each weight's high byte so (q = 16 * hi + lo, hi in [-128, 127]), with Q
 * rounded up to even (C padded with zero columns to a multiple of 4), and the low nibbles (lo in
 * [0, 15]) of a panel's pairs 2s and 2s + 1 in 2 * VW bytes: byte ((o / VW) * Q / 2 + s) * 2 * VW
 * + 2 * (o % VW) + e holds lo of column 4s + e in its low nibble and of column 4s + 2 + e in its
 * high one, so one widening, an `and` and a shift unpack two steps. Both parts are multiplied with
 * the same int16 inputs, into two accumulators (16 * hi * x would overflow int32 where hi * x
 * cannot). On paper_best_causal (random weights) the output SNR against float32 is 69.9 dB, fp16
 * weights' 71.9 dB, for three quarters of fp16's bytes: 0.37 against 0.42 ms per frame at one hop
 * (README, 2026-12-06). */
#if defined(NATIVE_WEIGHTS_INT12)
enum { TILE_PANELS = VW == 16 ? 4 : 2, TILE_FRAMES = 2 }; /* two accumulators per output vector */
#else
enum { TILE_PANELS = 4, TILE_FRAMES = VW == 16 ? 4 : 2 }; /* accumulators + weights fit the registers */
#endif

#if defined(NATIVE_INTEGER_WEIGHTS)
#if defined(NATIVE_WEIGHTS_INT12)
enum { HIGH_MAX = 128, PAIR_MULTIPLE = 2 }; /* the largest |hi|; input pairs per frame padded to even */
#else
enum { HIGH_MAX = 127, PAIR_MULTIPLE = 1 };
#endif
/* The input frames of a product: k frames of `stride` int16 pairs with a float scale each. */
typedef struct {
    const int16_t *q;
    const float *scale;
    int64_t stride; /* pairs from one frame to the next */
} Input;
typedef vint vacc;
enum { STEP_WEIGHTS = 2 * VW }; /* stored weights per panel and step (a column pair) */
static inline vacc acc_zero(void) { return vint_zero(); }
static inline vacc step_weights(const wtype *w) { return vint_pairs(w); }
static inline vacc step_input(const Input *in, int64_t f, int64_t j) {
    const int16_t *q = in->q + 2 * (f * in->stride + j);
    return vint_set1(pack_pair(q[0], q[1]));
}
static inline vacc step_mac(vacc w, vacc x, vacc acc) { return vint_dot(w, x, acc); }
static inline vfloat acc_value(vacc acc, vacc lacc, const Mat *M, const Input *in, int64_t o, int64_t f) {
#if defined(NATIVE_WEIGHTS_INT12)
    const vfloat sum = vfma(vint_float(acc), vset1(16.f), vint_float(lacc));
#else
    (void)lacc;
    const vfloat sum = vint_float(acc);
#endif
    return sum * (vload(M->scale + o) * vset1(in->scale[f]));
}

/* Each frame over its largest magnitude, times the largest int16 for which `cols` products with
 * weights of magnitude HIGH_MAX cannot overflow an int32 sum (nor, then, with int12's low nibbles),
 * rounded (the pairs past `cols` padded with 0), and its scale back. `scratch` holds k * (cols / 2
 * + 2) pairs and k scales. Both loops vectorise. */
static Input quantise(const float *x, int64_t cols, int64_t k, int64_t x_stride, float *scratch) {
    const int64_t steps = ((cols + 1) / 2 + PAIR_MULTIPLE - 1) / PAIR_MULTIPLE * PAIR_MULTIPLE;
    const double most = 2147483647.0 / ((double)HIGH_MAX * 2.0 * (double)steps);
    const float qmax = most < 32767.0 ? (float)floor(most) : 32767.f;
    int16_t *q = (int16_t *)scratch;
    float *scale = scratch + k * steps;
    for (int64_t f = 0; f < k; ++f) {
        const float *xf = x + f * x_stride;
        int16_t *qf = q + 2 * f * steps;
        float top = 0.f;
#pragma omp simd reduction(max : top)
        for (int64_t j = 0; j < cols; ++j) {
            const float a = fabsf(xf[j]);
            top = a > top ? a : top;
        }
        const float s = top > 0.f ? top / qmax : 1.f, inv = qmax / (top > 0.f ? top : 1.f);
        scale[f] = s;
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) qf[j] = (int16_t)rintf(xf[j] * inv); /* |x * inv| <= qmax */
        for (int64_t j = cols; j < 2 * steps; ++j) qf[j] = 0;
    }
    return (Input){q, scale, steps};
}
#else
typedef struct {
    const float *x;
    int64_t stride; /* floats from one frame to the next */
} Input;
typedef vfloat vacc;
enum { STEP_WEIGHTS = VW }; /* stored weights per panel and step (a column) */
static inline vacc acc_zero(void) { return vset1(0.f); }
static inline vacc step_weights(const wtype *w) { return vloadw(w); }
static inline vacc step_input(const Input *in, int64_t f, int64_t j) { return vset1(in->x[f * in->stride + j]); }
static inline vacc step_mac(vacc w, vacc x, vacc acc) { return vfma(w, x, acc); }
static inline vfloat acc_value(vacc acc, vacc lacc, const Mat *M, const Input *in, int64_t o, int64_t f) {
    (void)lacc; (void)in; (void)f;
#if defined(NATIVE_WEIGHTS_FP16)
    return acc * vload(M->scale + o); /* each row's scale (see Mat) */
#else
    (void)M; (void)o;
    return acc;
#endif
}
#endif

/* Panels [p, p + np) times frames [f, f + nf) of y (+)= W x + b, over `steps` columns (or column
 * pairs); np and nf are constants where it is inlined, so acc and wv live in registers. */
static inline __attribute__((always_inline)) void tile(const int np, const int nf, const Mat *M, const Input *in,
        const float *restrict b, float *restrict y, int64_t rows, int64_t steps, int64_t p, int64_t f,
        int64_t y_stride, int accumulate) {
    vacc acc[TILE_PANELS][TILE_FRAMES], lacc[TILE_PANELS][TILE_FRAMES]; /* lacc: int12's low nibbles */
    const wtype *restrict w = M->w + p * steps * STEP_WEIGHTS;
#pragma GCC unroll 4
    for (int r = 0; r < np; ++r)
#pragma GCC unroll 4
        for (int t = 0; t < nf; ++t) acc[r][t] = lacc[r][t] = acc_zero();
#if defined(NATIVE_WEIGHTS_INT12)
    const uint8_t *restrict lo = M->lo + p * steps * VW; /* 2 * VW bytes per two steps */
    for (int64_t j = 0; j < steps; j += 2) { /* two steps: one load of low nibbles */
#pragma GCC unroll 4
        for (int r = 0; r < np; ++r) {
            const wtype *wr = w + (r * steps + j) * STEP_WEIGHTS;
            const vint h0 = vint_pairs(wr), h1 = vint_pairs(wr + STEP_WEIGHTS);
            const vint nib = vint_nibbles(lo + (r * steps + j) * VW);
            const vint l0 = vint_low_nibbles(nib), l1 = vint_high_nibbles(nib);
#pragma GCC unroll 4
            for (int t = 0; t < nf; ++t) {
                const vint x0 = step_input(in, f + t, j), x1 = step_input(in, f + t, j + 1);
                acc[r][t] = vint_dot(h1, x1, vint_dot(h0, x0, acc[r][t]));
                lacc[r][t] = vint_dot(l1, x1, vint_dot(l0, x0, lacc[r][t]));
            }
        }
    }
#else
    for (int64_t j = 0; j < steps; ++j) {
        vacc wv[TILE_PANELS];
#pragma GCC unroll 4
        for (int r = 0; r < np; ++r) wv[r] = step_weights(w + (r * steps + j) * STEP_WEIGHTS);
#pragma GCC unroll 4
        for (int t = 0; t < nf; ++t) {
            const vacc xv = step_input(in, f + t, j);
#pragma GCC unroll 4
            for (int r = 0; r < np; ++r) acc[r][t] = step_mac(wv[r], xv, acc[r][t]);
        }
    }
#endif
#pragma GCC unroll 4
    for (int r = 0; r < np; ++r) {
        const int64_t o = (p + r) * VW, n = rows - o < VW ? rows - o : VW;
#pragma GCC unroll 4
        for (int t = 0; t < nf; ++t) {
            float *yf = y + (f + t) * y_stride + o;
            vfloat v = acc_value(acc[r][t], lacc[r][t], M, in, o, f + t); /* scales padded to whole panels */
            if (n == VW) {
                if (b) v = v + vload(b + o);
                if (accumulate) v = v + vload(yf);
                vstore(yf, v);
            } else { /* the last, padded panel */
                float part[VW];
                vstore(part, v);
                for (int64_t i = 0; i < n; ++i) {
                    const float u = part[i] + (b ? b[o + i] : 0.f);
                    yf[i] = accumulate ? yf[i] + u : u;
                }
            }
        }
    }
}

/* Panels [p, p + np) for all k frames, a tile of frames at a time. */
static inline __attribute__((always_inline)) void panel_rows_all_frames(const int np, const Mat *M, const Input *in,
        const float *restrict b, float *restrict y, int64_t rows, int64_t steps, int64_t k, int64_t p,
        int64_t y_stride, int accumulate) {
    int64_t f = 0;
    for (; f + TILE_FRAMES <= k; f += TILE_FRAMES)
        tile(np, TILE_FRAMES, M, in, b, y, rows, steps, p, f, y_stride, accumulate);
    for (; f < k; ++f) tile(np, 1, M, in, b, y, rows, steps, p, f, y_stride, accumulate);
}

/* y[f, :rows] (+)= W x[f] + b for the k frames; x rows x_stride apart, y rows y_stride apart.
 * `scratch`: the integer builds' quantised input (see `quantise`); unused by the others. */
static void linear(const Mat *M, const float *restrict b, const float *restrict x, float *restrict y,
                   int64_t rows, int64_t cols, int64_t k, int64_t x_stride, int64_t y_stride, int accumulate,
                   float *scratch) {
#if defined(NATIVE_INTEGER_WEIGHTS)
    const Input in = quantise(x, cols, k, x_stride, scratch);
    const int64_t steps = in.stride;
#else
    (void)scratch;
    const Input in = {x, x_stride};
    const int64_t steps = cols;
#endif
    const int64_t panels = (rows + VW - 1) / VW;
    int64_t p = 0;
    for (; p + TILE_PANELS <= panels; p += TILE_PANELS)
        panel_rows_all_frames(TILE_PANELS, M, &in, b, y, rows, steps, k, p, y_stride, accumulate);
    for (; p < panels; ++p) panel_rows_all_frames(1, M, &in, b, y, rows, steps, k, p, y_stride, accumulate);
}

/* y[f, :rows] = W x[f] for the k frames, in float32 whatever the build's weight storage, from W
 * transposed (w_t: (cols, rows)), a row of y at a time summed over the columns (no horizontal
 * sums). For the encoder and the decoder: their matrices are small (N x L, 64 KB for the demo,
 * 32 KB for paper_best), and rounded to fp16 they cost a trained causal demo model 5.5 dB of
 * output SNR (its 1x1 convolutions' weights rounded alone: 78.7 dB, with the filterbanks 73.2 dB;
 * the int builds also quantised the waveform to int16 here). */
static void linear_f32(const float *restrict w_t, const float *restrict x, float *restrict y, int64_t rows,
                       int64_t cols, int64_t k, int64_t x_stride, int64_t y_stride) {
    for (int64_t f = 0; f < k; ++f) {
        const float *xf = x + f * x_stride;
        float *restrict yf = y + f * y_stride;
        memset(yf, 0, (size_t)rows * sizeof(float));
        for (int64_t j = 0; j < cols; ++j) {
            const float a = xf[j], *wj = w_t + j * rows;
#pragma omp simd
            for (int64_t o = 0; o < rows; ++o) yf[o] += a * wj[o];
        }
    }
}

/* PReLU in place: one shared slope (n == 1) or one per channel. */
static void prelu(float *x, int64_t count, int64_t chan, const float *slope, int64_t n) {
    for (int64_t j = 0; j < count; j += chan)
        for (int64_t c = 0; c < chan; ++c) {
            const float a = n == 1 ? slope[0] : slope[c];
            const float v = x[j + c];
            x[j + c] = v > 0.f ? v : a * v;
        }
}

/* One frame of a norm, in place. `frame` is this frame's number (1 for the first of the stream)
 * and `sums` the running (sum, sum of squares) of a cumulative norm, in double as StreamStep's.
 * The sums are vectorised (omp simd: lanes summed apart, then together): as one serial chain of
 * double adds the 48 norms of a paper_best frame took ~30 us of the step's ~40 outside the products. */
static void norm_frame(const Norm *n, float *x, int64_t chan, int64_t frame, double *sums) {
    if (n->kind == NORM_BN) {
        for (int64_t c = 0; c < chan; ++c) x[c] = x[c] * n->scale[c] + n->shift[c];
        return;
    }
    float mean, inv;
    if (n->kind == NORM_CLN) { /* F.layer_norm over the channels, eps 1e-8 */
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < chan; ++c) s += x[c];
        const double m = s / (double)chan;
        double v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int64_t c = 0; c < chan; ++c) v += (x[c] - m) * (x[c] - m);
        mean = (float)m;
        inv = (float)(1.0 / sqrt(v / (double)chan + 1e-8));
    } else { /* cgLN: statistics over the channels of every frame so far */
        double s = 0.0, q = 0.0;
#pragma omp simd reduction(+ : s, q)
        for (int64_t c = 0; c < chan; ++c) { s += x[c]; q += (double)x[c] * x[c]; }
        sums[0] += s;
        sums[1] += q;
        const double count = (double)frame * (double)chan;
        const double m = sums[0] / count;
        mean = (float)m;
        inv = (float)(1.0 / sqrt(sums[1] / count - m * m + 1e-8));
    }
    if (n->affine)
        for (int64_t c = 0; c < chan; ++c) x[c] = (x[c] - mean) * inv * n->gamma[c] + n->beta[c];
    else
        for (int64_t c = 0; c < chan; ++c) x[c] = (x[c] - mean) * inv;
}

static void act(float *x, int64_t count, int64_t kind) {
    if (kind == ACT_RELU)
        for (int64_t i = 0; i < count; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
    else if (kind == ACT_SIGMOID)
        for (int64_t i = 0; i < count; ++i) x[i] = 1.f / (1.f + expf(-x[i]));
}

static int64_t max3(int64_t a, int64_t b, int64_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* The scratch buffers of a call with k hops, as offsets into `work` (the one definition of its
 * layout): cat, tf, xn, acc, h, y, score, frame_out, quant (the integer builds'); off[W_END] is the total. */
enum { W_CAT, W_TF, W_XN, W_ACC, W_H, W_Y, W_SCORE, W_FRAME, W_QUANT, W_END };

static void work_layout(const Model *m, int64_t k, int64_t off[W_END + 1]) {
    const int64_t W = m->B + m->Sc, wide = max3(m->H, m->N, W); /* the quantised products' widest input */
    const int64_t size[W_END] = {m->L + k * m->hop, k * m->N, k * wide, k * W, k * wide, k * wide,
                                 k * m->n_src * m->N, m->n_src * m->L, k * (wide / 2 + 3)};
    off[0] = 0;
    for (int i = 0; i < W_END; ++i) off[i + 1] = off[i] + size[i];
}

/* Floats of scratch memory a call with k hops needs. */
int64_t work_floats(const Model *m, int64_t k) {
    int64_t off[W_END + 1];
    work_layout(m, k, off);
    return off[W_END];
}

/* k hops for each of `batch` streams. chunk (batch, k * hop) -> out (batch, n_src, k * hop).
 * State, updated in place: pending (batch, L - hop) samples, tail (batch, n_src, L - hop),
 * sums (batch, n_sums, 2), rings (batch, ring_total, H), pos (n_blocks) ring write positions
 * (shared: all streams of a batch advance together), *frames_seen frames before this call (advanced
 * by k here: one Python tensor operation less per call). */
void stream_step(const Model *m, int64_t batch, int64_t k, const float *chunk, float *out, float *pending,
                 float *tail, double *sums, float *rings, int64_t *pos, int64_t *frames_seen, float *work) {
    const int64_t frames_done = *frames_seen;
    const int64_t N = m->N, L = m->L, hop = m->hop, B = m->B, H = m->H, Sc = m->Sc;
    const int64_t W = B + Sc, overlap = L - hop, ns = m->n_src;
    int64_t off[W_END + 1];
    work_layout(m, k, off);
    float *cat = work + off[W_CAT], *tf = work + off[W_TF], *xn = work + off[W_XN], *acc = work + off[W_ACC];
    float *h = work + off[W_H], *y = work + off[W_Y], *score = work + off[W_SCORE], *frame_out = work + off[W_FRAME];
    float *quant = work + off[W_QUANT];
    int64_t p0[m->n_blocks > 0 ? m->n_blocks : 1];
    for (int64_t i = 0; i < m->n_blocks; ++i) p0[i] = pos[i];

    for (int64_t s = 0; s < batch; ++s) {
        float *pend = pending + s * overlap, *tl = tail + s * ns * overlap, *o = out + s * ns * k * hop;
        double *sm = sums + s * m->n_sums * 2;
        float *ring_s = rings + s * m->ring_total * H;
        for (int64_t i = 0; i < m->n_blocks; ++i) pos[i] = p0[i];

        /* encoder: frame f is the L samples from f * hop of pending ++ chunk */
        memcpy(cat, pend, (size_t)overlap * sizeof(float));
        memcpy(cat + overlap, chunk + s * k * hop, (size_t)(k * hop) * sizeof(float));
        memcpy(pend, cat + k * hop, (size_t)overlap * sizeof(float));
        linear_f32(m->enc_w_t, cat, tf, N, L, k, hop, N);
        act(tf, k * N, m->enc_act);

        /* bottleneck: norm, 1x1 conv (the norm's affine part folded in); the skip sum starts at 0 */
        memcpy(xn, tf, (size_t)(k * N) * sizeof(float));
        for (int64_t f = 0; f < k; ++f)
            norm_frame(&m->norm0, xn + f * N, N, frames_done + f + 1, sm + 2 * m->norm0.sums_index);
        linear(&m->bott_w, m->bott_b, xn, acc, B, N, k, N, W, 0, quant);
        for (int64_t f = 0; f < k; ++f) memset(acc + f * W + B, 0, (size_t)Sc * sizeof(float));

        for (int64_t i = 0; i < m->n_blocks; ++i) {
            const Block *bl = m->blocks + i;
            linear(&bl->in_w, bl->in_b, acc, h, H, B, k, W, H, 0, quant);
            prelu(h, k * H, H, bl->slope1, bl->slope1_n);
            float *ring = ring_s + bl->ring_offset * H;
            for (int64_t f = 0; f < k; ++f) {
                float *hf = h + f * H, *yf = y + f * H;
                norm_frame(&bl->norm1, hf, H, frames_done + f + 1, sm + 2 * bl->norm1.sums_index);
                /* causal dilated depthwise conv: tap j reads the frame (P - 1 - j) * dilation back */
                const int64_t now = pos[i];
                memcpy(ring + now * H, hf, (size_t)H * sizeof(float));
                memcpy(yf, bl->dw_b, (size_t)H * sizeof(float));
                for (int64_t j = 0; j < bl->taps; ++j) {
                    int64_t at = now - (bl->taps - 1 - j) * bl->dilation;
                    if (at < 0) at += bl->ring;
                    const float *past = ring + at * H, *w = bl->dw_w + j * H;
#pragma omp simd
                    for (int64_t c = 0; c < H; ++c) yf[c] += w[c] * past[c];
                }
                pos[i] = now + 1 == bl->ring ? 0 : now + 1;
            }
            prelu(y, k * H, H, bl->slope2, bl->slope2_n);
            for (int64_t f = 0; f < k; ++f)
                norm_frame(&bl->norm2, y + f * H, H, frames_done + f + 1, sm + 2 * bl->norm2.sums_index);
            /* residual and skip 1x1 convs as one product, added to the residual stream | skip sum */
            linear(&bl->out_w, bl->out_b, y, acc + bl->out_offset, bl->out_rows, H, k, H, W, 1, quant);
        }

        /* masks from the skip sum (or the residual stream without skip connections) */
        const int64_t mc = Sc ? Sc : B;
        for (int64_t f = 0; f < k; ++f) memcpy(xn + f * mc, acc + f * W + (Sc ? B : 0), (size_t)mc * sizeof(float));
        prelu(xn, k * mc, mc, m->mask_slope, m->mask_slope_n);
        linear(&m->mask_w, m->mask_b, xn, score, ns * N, mc, k, mc, ns * N, 0, quant);
        if (m->mask_act == ACT_SOFTMAX) { /* over the sources, for each basis */
            for (int64_t f = 0; f < k; ++f)
                for (int64_t n = 0; n < N; ++n) {
                    float *sc = score + f * ns * N + n, top = sc[0], total = 0.f;
                    for (int64_t j = 1; j < ns; ++j) top = sc[j * N] > top ? sc[j * N] : top;
                    for (int64_t j = 0; j < ns; ++j) { sc[j * N] = expf(sc[j * N] - top); total += sc[j * N]; }
                    for (int64_t j = 0; j < ns; ++j) sc[j * N] /= total;
                }
        } else {
            act(score, k * ns * N, m->mask_act);
        }
        for (int64_t f = 0; f < k; ++f)
            for (int64_t j = 0; j < ns; ++j) {
                float *sc = score + (f * ns + j) * N;
                const float *e = tf + f * N;
                for (int64_t n = 0; n < N; ++n) sc[n] *= e[n];
            }

        /* decoder: each source's frame is dec_w^T masked, overlap-added with the carried tail */
        for (int64_t f = 0; f < k; ++f) {
            linear_f32(m->dec_w, score + f * ns * N, frame_out, L, N, ns, N, L);
            for (int64_t j = 0; j < ns; ++j) {
                float *fo = frame_out + j * L, *t = tl + j * overlap;
                for (int64_t l = 0; l < overlap; ++l) fo[l] += t[l];
                memcpy(o + j * k * hop + f * hop, fo, (size_t)hop * sizeof(float));
                memcpy(t, fo + hop, (size_t)overlap * sizeof(float));
            }
        }
    }
    *frames_seen = frames_done + k;
}
