/* family: keeps blocks through every entry point of the C allocator
 * family, each from its own function, so a tracer's count per function
 * can be held against the program's: keep_<entry> keeps 2,000 blocks of
 * its own size through that entry. A realloc that grows a block
 * (grow_realloc: malloc 100, realloc to 900) keeps only the grown one.
 * It prints "ready pid N", waits for SIGUSR1, keeps, prints one line
 * "kept FUNCTION BYTES" per function and "done kept BYTES bytes in N
 * blocks", and waits to be killed.
 *
 * Build: cc -O2 -fomit-frame-pointer -o family family.c */
#define _GNU_SOURCE
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 2000

/* Not static: the stores (and so the calls) must stay. */
void *kept[9][N];

__attribute__((noinline)) static void keep_malloc(int i) { kept[0][i] = malloc(100); }
__attribute__((noinline)) static void keep_calloc(int i) { kept[1][i] = calloc(10, 20); }
__attribute__((noinline)) static void keep_realloc_null(int i) { kept[2][i] = realloc(NULL, 300); }

__attribute__((noinline)) static void keep_reallocarray(int i)
{
    kept[3][i] = reallocarray(malloc(8), 50, 8);
}

__attribute__((noinline)) static void keep_posix_memalign(int i)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, 500) != 0)
        abort();
    kept[4][i] = p;
}

__attribute__((noinline)) static void keep_aligned_alloc(int i) { kept[5][i] = aligned_alloc(64, 640); }
__attribute__((noinline)) static void keep_memalign(int i) { kept[6][i] = memalign(128, 700); }
__attribute__((noinline)) static void keep_valloc(int i) { kept[7][i] = valloc(800); }

__attribute__((noinline)) static void grow_realloc(int i)
{
    kept[8][i] = realloc(malloc(100), 900);
}

static const struct {
    const char *name;
    void (*keep)(int);
    size_t size;
} entries[] = {
    {"keep_malloc", keep_malloc, 100},
    {"keep_calloc", keep_calloc, 200},
    {"keep_realloc_null", keep_realloc_null, 300},
    {"keep_reallocarray", keep_reallocarray, 400},
    {"keep_posix_memalign", keep_posix_memalign, 500},
    {"keep_aligned_alloc", keep_aligned_alloc, 640},
    {"keep_memalign", keep_memalign, 700},
    {"keep_valloc", keep_valloc, 800},
    {"grow_realloc", grow_realloc, 900},
};

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(void)
{
    signal(SIGUSR1, on_usr1);
    printf("ready pid %d\n", getpid());
    fflush(stdout);
    while (!go)
        pause();
    size_t total = 0;
    for (size_t e = 0; e < sizeof entries / sizeof entries[0]; e++) {
        for (int i = 0; i < N; i++)
            entries[e].keep(i);
        printf("kept %s %zu\n", entries[e].name, entries[e].size * N);
        total += entries[e].size * N;
    }
    printf("done kept %zu bytes in %zu blocks\n", total, (size_t)N * 9);
    fflush(stdout);
    for (;;)
        pause();
}
