/* nomalloc: a static program without the C library, so no malloc at all:
 * it spins, paused, until killed.
 * Build: cc -static -nostdlib -O1 -o nomalloc nomalloc.c */
void _start(void)
{
    for (;;)
        __asm__ volatile("pause");
}
