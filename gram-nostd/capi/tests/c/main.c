/* gram's C API from C on a Cortex-M4F (QEMU mps2-an386): volumes, candidate preparation,
 * scoring, candidate bytes and error statuses, checked against exact answers (the same cases
 * the Rust firmware checks). No libc: semihosting for output and exit. Built and run by
 * scripts/capi-check.sh. */
#include <stddef.h>
#include <stdint.h>
#include "gram.h"

/* Freestanding, no C library: the Rust library brings these (compiler-builtins' mem functions). */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* ---- start-up and semihosting ---- */
extern char __stack_top[], __bss_start[], __bss_end[];
int main(void);

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static void put(const char *s) { semihost(0x04, s); } /* SYS_WRITE0 */

static void finish(int ok) {
  /* SYS_EXIT: ApplicationExit (status 0) or RunTimeErrorUnknown (status 1). */
  semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
  for (;;) {}
}

void reset(void) {
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: enable the FPU (CP10, CP11) */
  __asm__ volatile("dsb\n isb");
  memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
  finish(main() == 0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[2])(void) = {
    (void (*)(void))__stack_top, reset};

/* ---- checks ---- */
static int failures;

static void check(const char *name, int ok) {
  put(ok ? "ok       " : "FAILED   ");
  put(name);
  put("\n");
  failures += !ok;
}

static int same_text(const char *x, const char *y) {
  while (*x && *x == *y) x++, y++;
  return *x == *y;
}

static int close_to(double got, double want, double rel) {
  if (want == 0.0) return got == 0.0;
  double d = (got - want) / want;
  return d <= rel && -d <= rel;
}

#define N 16
#define CANDIDATES 8

int main(void) {
  static float a[N], b[N], e0[N], p[N], q[N];
  double v = -1.0;

  /* 3-4-5 and an orthogonal vector: vol = 5 * 5. */
  a[0] = 3.0f; a[1] = 4.0f; b[2] = 5.0f;
  const float *ab[2] = {a, b};
  check("volume 3-4-5 = 25", gram_volume_f32(ab, 2, N, &v) == GRAM_STATUS_OK && close_to(v, 25.0, 1e-15));

  /* e0, e0 + eps e1, e0 + eps e2 with eps = 2^-20: vol = eps^2 (the f32 Gram-det recipe: 0). */
  const float eps = 1.0f / (float)(1u << 20);
  e0[0] = p[0] = q[0] = 1.0f; p[1] = eps; q[2] = eps;
  const float *epq[3] = {e0, p, q};
  check("volume near-collinear = 2^-40", gram_volume_f32(epq, 3, N, &v) == GRAM_STATUS_OK &&
                                              close_to(v, (double)eps * (double)eps, 1e-9));
  const float *dup[3] = {e0, p, e0};
  check("volume of a duplicate = 0 exactly", gram_volume_f32(dup, 3, N, &v) == GRAM_STATUS_OK && v == 0.0);

  /* Score row: anchor e0; candidate j = ((j+1) e_{1+j%7}, 0.5 e0 + 2^-2j e_{8+j%7}):
     vol = (j+1) 2^-2j. */
  static float m0[CANDIDATES * N], m1[CANDIDATES * N], out[CANDIDATES], again[CANDIDATES];
  for (int j = 0; j < CANDIDATES; j++) {
    m0[j * N + 1 + j % 7] = (float)(j + 1);
    m1[j * N] = 0.5f;
    m1[j * N + 8 + j % 7] = 1.0f / (float)(1u << (2 * j));
  }
  const float *mods[2] = {m0, m1};
  static GramCandidate cands[CANDIDATES], loaded[CANDIDATES];
  GramScoreStats stats;
  check("prepare 8 candidates", gram_candidates_prepare_f32(mods, 2, N, CANDIDATES, cands) == GRAM_STATUS_OK);
  check("score a row", gram_score_row_f32(e0, N, mods, 2, cands, CANDIDATES, out, &stats) == GRAM_STATUS_OK);
  int row_ok = 1;
  for (int j = 0; j < CANDIDATES; j++)
    row_ok &= close_to(out[j], (double)(j + 1) / (double)(1u << (2 * j)), 1e-6);
  check("row = (j+1) 2^-2j within 1e-6", row_ok);

  /* One candidate from its own vectors equals the prepared one. */
  const float *c3[2] = {&m0[3 * N], &m1[3 * N]};
  GramCandidate single;
  check("candidate from vectors", gram_candidate_new_f32(c3, 2, N, &single) == GRAM_STATUS_OK);

  /* Through bytes (as flashed): the same scores, bit for bit. */
  uint8_t bytes[104];
  int bytes_ok = gram_candidate_bytes_len(2) == sizeof bytes;
  for (int j = 0; j < CANDIDATES; j++)
    bytes_ok &= gram_candidate_to_bytes(&cands[j], bytes, sizeof bytes) == GRAM_STATUS_OK &&
                gram_candidate_from_bytes(bytes, sizeof bytes, &loaded[j]) == GRAM_STATUS_OK;
  bytes_ok &= gram_score_row_f32(e0, N, mods, 2, loaded, CANDIDATES, again, NULL) == GRAM_STATUS_OK;
  bytes_ok &= memcmp(out, again, sizeof out) == 0;
  check("candidates through bytes score the same bits", bytes_ok);

  /* Errors are statuses. */
  bytes[30] ^= 1;
  check("damaged bytes refused",
        gram_candidate_from_bytes(bytes, sizeof bytes, &loaded[0]) == GRAM_STATUS_INVALID_PARAMETER);
  static GramCandidate never_prepared[1];
  check("unprepared storage refused",
        gram_score_row_f32(e0, N, mods, 2, never_prepared, 1, out, NULL) == GRAM_STATUS_INVALID_CANDIDATE);
  float nan_row[N] = {0};
  uint32_t nan_bits = 0x7fc00000u;
  memcpy(&nan_row[5], &nan_bits, 4);
  const float *with_nan[2] = {a, nan_row};
  check("NaN input refused", gram_volume_f32(with_nan, 2, N, &v) == GRAM_STATUS_NON_FINITE);
  const float *with_null[2] = {a, NULL};
  check("NULL refused", gram_volume_f32(with_null, 2, N, &v) == GRAM_STATUS_NULL_POINTER);
  check("status message", same_text(gram_status_message(GRAM_STATUS_NULL_POINTER), "a required pointer is NULL"));

  put(failures == 0 ? "C API: all checks passed\n" : "C API: checks FAILED\n");
  return failures == 0 ? 0 : 1;
}
