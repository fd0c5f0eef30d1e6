/* nbench: the native workloads of `cargo xtask bench`, built the
 * distribution way (cc -O2 -fomit-frame-pointer). It speaks the bench's
 * line protocol: prints "ready", waits for a line on stdin (so a tracer
 * can attach first), does its fixed work and times it itself, prints one
 * JSON line with the times, then waits for stdin to close and exits 0.
 *
 *   -mode churn -n N   N malloc/free pairs of 16-527 bytes, in batches of
 *                      1024 mallocs then 1024 frees: the malloc phases and
 *                      the free phases are timed apart, so a tracer's cost
 *                      per malloc and per free can be told apart.
 *   -mode server -n N  N "requests", each hashing a 16 KiB body (the CPU
 *                      work) and making six allocations, one kept every
 *                      8th request (a slow leak): allocation is a small
 *                      share of the time.
 *   -mode stacks -n N  N mallocs of 64 bytes, each from its own call stack
 *                      (N <= 100000: five frames out of ten functions), all
 *                      kept: N distinct native stacks.
 *
 * Build: cc -O2 -fomit-frame-pointer -o nbench nbench.c */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* xorshift64: sizes and bodies, the same sequence every run. */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        abort();
    return p;
}

/* ---- churn ---- */

static void churn(long n)
{
    static void *blocks[BATCH];
    static size_t sizes[BATCH];
    double t_malloc = 0, t_free = 0, start = now();
    for (long done = 0; done < n; done += BATCH) {
        int k = n - done < BATCH ? (int)(n - done) : BATCH;
        for (int i = 0; i < k; i++)
            sizes[i] = 16 + next() % 512;
        double t0 = now();
        for (int i = 0; i < k; i++)
            blocks[i] = xmalloc(sizes[i]);
        double t1 = now();
        for (int i = 0; i < k; i++)
            free(blocks[i]);
        double t2 = now();
        t_malloc += t1 - t0;
        t_free += t2 - t1;
    }
    double seconds = now() - start;
    printf("{\"seconds\": %.6f, \"malloc_seconds\": %.6f, \"free_seconds\": %.6f, "
           "\"mallocs\": %ld, \"frees\": %ld}\n",
           seconds, t_malloc, t_free, n, n);
}

/* ---- server ---- */

#define BODY 16384

static char **kept;
static size_t nkept, kept_bytes;

/* FNV-1a over the body: the request's CPU work. */
__attribute__((noinline)) static uint64_t hash_body(const unsigned char *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The leak: a session record kept every 8th request. */
__attribute__((noinline)) static void remember_session(uint64_t h)
{
    char *s = xmalloc(256);
    memset(s, (int)h, 256);
    kept[nkept++] = s;
    kept_bytes += 256;
}

__attribute__((noinline)) static uint64_t handle_request(long i, unsigned char *body)
{
    char *headers[4];
    for (int j = 0; j < 4; j++) {
        size_t n = 32 + next() % 224;
        headers[j] = xmalloc(n);
        memset(headers[j], j, n);
    }
    for (size_t j = 0; j < BODY; j += 8)
        *(uint64_t *)(body + j) = next();
    uint64_t h = hash_body(body, BODY);
    char *response = xmalloc(1024);
    snprintf(response, 1024, "{\"id\": %ld, \"hash\": %llu}", i, (unsigned long long)h);
    h ^= (uint64_t)strlen(response);
    if (i % 8 == 0)
        remember_session(h);
    free(response);
    for (int j = 0; j < 4; j++)
        free(headers[j]);
    return h;
}

static void server(long n)
{
    kept = calloc((size_t)n / 8 + 1, sizeof *kept);
    unsigned char *body = xmalloc(BODY);
    uint64_t sum = 0;
    double start = now();
    for (long i = 0; i < n; i++)
        sum ^= handle_request(i, body);
    double seconds = now() - start;
    free(body);
    printf("{\"seconds\": %.6f, \"requests\": %ld, \"mallocs\": %ld, \"frees\": %ld, "
           "\"kept_bytes\": %zu, \"check\": %llu}\n",
           seconds, n, 5 * n + (long)nkept, 5 * n, kept_bytes, (unsigned long long)(sum & 0xffff));
}

/* ---- stacks ---- */

#define DEPTH 5
static void **held;
static long nheld;

typedef void (*step_fn)(int depth, long path);
static step_fn steps[10];

/* One of ten functions per frame: the i-th allocation's stack spells i in
 * base 10, so each of 10^DEPTH allocations has a stack of its own. The
 * volatile sink after the call keeps it from being a tail call. */
static volatile long sink;
#define STEP(k)                                                     \
    __attribute__((noinline)) static void step##k(int depth, long path) \
    {                                                               \
        if (depth == 0) {                                           \
            held[nheld++] = xmalloc(64);                            \
        } else {                                                    \
            steps[path % 10](depth - 1, path / 10);                 \
        }                                                           \
        sink += k;                                                  \
    }
STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9)

static void stacks(long n)
{
    step_fn all[10] = {step0, step1, step2, step3, step4, step5, step6, step7, step8, step9};
    memcpy(steps, all, sizeof all);
    long max = 1;
    for (int d = 0; d < DEPTH; d++)
        max *= 10;
    if (n > max)
        n = max;
    held = calloc((size_t)n, sizeof *held);
    double start = now();
    for (long i = 0; i < n; i++)
        steps[i % 10](DEPTH - 1, i / 10);
    double seconds = now() - start;
    printf("{\"seconds\": %.6f, \"mallocs\": %ld, \"stacks\": %ld, \"kept_bytes\": %ld}\n",
           seconds, n, n, 64 * n);
}

int main(int argc, char **argv)
{
    const char *mode = "churn";
    long n = 2000000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-mode") == 0)
            mode = argv[i + 1];
        else if (strcmp(argv[i], "-n") == 0)
            n = atol(argv[i + 1]);
    }
    if (strcmp(mode, "churn") && strcmp(mode, "server") && strcmp(mode, "stacks")) {
        fprintf(stderr, "nbench: unknown -mode %s\n", mode);
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    if (strcmp(mode, "churn") == 0)
        churn(n);
    else if (strcmp(mode, "server") == 0)
        server(n);
    else
        stacks(n);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin))
        ;
    return 0;
}
