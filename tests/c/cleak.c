/* cleak: cppleak's C twin, built the distribution way (-O2, no frame
 * pointers). Each request keeps 1,000 bytes from malloc in
 * remember_request (the leak) and churns a 4 KiB buffer in churn (freed
 * at once). It prints "ready pid N", waits for SIGUSR1 (so a tracer can
 * attach first), serves -n requests (default 20000), prints "done kept
 * BYTES bytes in N blocks", and waits to be killed. With -x it starts at
 * once and exits with status 3 when done (for a tracer that starts it).
 * Run it with a preloaded allocator (LD_PRELOAD=libjemalloc.so.2) to test
 * that one.
 *
 * Build: cc -O2 -fomit-frame-pointer -o cleak cleak.c */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char **kept;
static size_t nkept;

/* The leak: every request's buffer is remembered, never freed. */
__attribute__((noinline)) static void remember_request(size_t n)
{
    char *p = malloc(n);
    if (!p)
        abort();
    memset(p, 1, n);
    kept[nkept++] = p;
}

/* Churn: a buffer per request, freed before it returns. */
__attribute__((noinline)) static void churn(int i)
{
    char *volatile p = malloc(4096);
    if (!p)
        abort();
    memset(p, i, 4096);
    free(p);
}

__attribute__((noinline)) static void handle_request(int i)
{
    remember_request(1000);
    churn(i);
}

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(int argc, char **argv)
{
    int n = 20000, at_once = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "-x") == 0)
            at_once = 1;
    }
    kept = calloc((size_t)n, sizeof *kept);
    signal(SIGUSR1, on_usr1);
    printf("ready pid %d\n", (int)getpid());
    fflush(stdout);
    while (!go && !at_once)
        pause();
    for (int i = 0; i < n; i++)
        handle_request(i);
    printf("done kept %zu bytes in %zu blocks\n", nkept * 1000, nkept);
    fflush(stdout);
    if (at_once)
        return 3;
    for (;;)
        pause();
}
