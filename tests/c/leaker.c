/* leaker: a C program that leaks a 1 KiB malloc every millisecond (-n N: N
 * of them), forever (or for -t SECONDS, then exits). Each block is written to, so it is
 * resident, and kept in a list nothing ever frees: resident memory grows by
 * about 1 MiB/s. glibc serves these small blocks from the main arena, which
 * it grows with brk.
 *
 * Build: cc -O1 -fno-omit-frame-pointer -o leaker leaker.c
 * Prints "leaking pid N" once started. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct block {
    struct block *next;
    char payload[1024 - sizeof(struct block *)];
};

static struct block *kept;

/* The leak: a request buffer that is filled and never freed. noinline so
 * it shows up in stacks under its own name. */
__attribute__((noinline)) static void leak_request_buffer(unsigned n)
{
    struct block *b = malloc(sizeof *b); /* LINE: leak's malloc */
    if (!b)
        abort();
    memset(b->payload, (int)n, sizeof b->payload);
    b->next = kept;
    kept = b;
}

int main(int argc, char **argv)
{
    double seconds = -1;
    unsigned per_tick = 1;
    int opt;
    while ((opt = getopt(argc, argv, "t:n:")) != -1) {
        if (opt == 't')
            seconds = atof(optarg);
        else if (opt == 'n')
            per_tick = (unsigned)atoi(optarg);
        else {
            fprintf(stderr, "usage: %s [-t SECONDS] [-n BLOCKS_PER_MS]\n", argv[0]);
            return 2;
        }
    }
    printf("leaking pid %d\n", (int)getpid());
    fflush(stdout);

    struct timespec start, now, tick = {0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned n = 0;; n++) {
        for (unsigned i = 0; i < per_tick; i++)
            leak_request_buffer(n);
        nanosleep(&tick, NULL);
        if (seconds >= 0 && n % 64 == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            double elapsed = (now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9;
            if (elapsed >= seconds)
                return 0;
        }
    }
}
