/* One token's vector times a bf16 weight matrix on a CPU with AVX512-BF16: y = W x + b.
 *
 * Generating text at batch 1 multiplies a single vector by every weight matrix of the model, so a
 * decoding step is as fast as the weights can be read from memory. PyTorch's bf16 kernels for this shape
 * read at about half the speed of its fp32 ones, which throws away what bf16 weights (half the bytes)
 * should buy. This kernel reads each weight once, in order, and keeps the memory system busy:
 *   - ROWS rows of W at a time, one fp32 accumulator per row (VDPBF16PS: 32 bf16 products per instruction,
 *     added in pairs into 16 fp32 lanes);
 *   - while it works on one block of rows it asks for the next block (software prefetch), so the loads
 *     of the next rows are already under way;
 *   - the blocks are shared among the threads PyTorch uses (OpenMP: the same runtime PyTorch loaded).
 * The result is rounded once to bf16, like nn.Linear with bf16 weights; only the order of the fp32
 * additions differs.
 *
 * W: [N, K] bf16, row-major; x: [K] bf16; b: [N] bf16 or NULL; y: [N] bf16. */
#include <immintrin.h>
#include <stdint.h>

#define ROWS 16

static inline __m512 block_sums(const __m512 acc[ROWS]) {
  float sums[ROWS];
  for (int r = 0; r < ROWS; r++) sums[r] = _mm512_reduce_add_ps(acc[r]);
  return _mm512_loadu_ps(sums);
}

void bf16_gemv(const uint16_t *W, const uint16_t *x, const uint16_t *b, uint16_t *y, int64_t N, int64_t K,
               int threads) {
  const int64_t blocks = (N + ROWS - 1) / ROWS;
  const __mmask32 k_tail = (__mmask32)((1ull << (K % 32)) - 1); /* the last columns, when K % 32 != 0 */
  const int64_t k_full = K - K % 32;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t block = 0; block < blocks; block++) {
    const int64_t n0 = block * ROWS;
    const int rows = N - n0 < ROWS ? (int)(N - n0) : ROWS;
    const uint16_t *w[ROWS], *next[ROWS];
    for (int r = 0; r < ROWS; r++) {
      w[r] = W + (n0 + (r < rows ? r : 0)) * K; /* a short last block repeats its first row */
      const int64_t n_next = n0 + ROWS + r < N ? n0 + ROWS + r : N - 1;
      next[r] = W + n_next * K;
    }
    __m512 acc[ROWS];
    for (int r = 0; r < ROWS; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < k_full; k += 32) {
      const __m512bh xk = (__m512bh)_mm512_loadu_si512(x + k);
#pragma GCC unroll 16
      for (int r = 0; r < ROWS; r++) {
        _mm_prefetch((const char *)(next[r] + k), _MM_HINT_T0);
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_loadu_si512(w[r] + k), xk);
      }
    }
    if (k_tail) {
      const __m512bh xk = (__m512bh)_mm512_maskz_loadu_epi16(k_tail, x + k_full);
      for (int r = 0; r < ROWS; r++)
        acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_maskz_loadu_epi16(k_tail, w[r] + k_full), xk);
    }
    __m512 out = block_sums(acc);
    const __mmask16 keep = (__mmask16)((1u << rows) - 1);
    if (b) /* bf16 -> fp32 is a shift by 16 bits */
      out = _mm512_add_ps(out, _mm512_castsi512_ps(_mm512_slli_epi32(
                                   _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(keep, b + n0)), 16)));
    _mm256_mask_storeu_epi16(y + n0, keep, (__m256i)_mm512_cvtneps_pbh(out));
  }
}
