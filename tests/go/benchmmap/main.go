// benchmmap is the `leak top` workload of `cargo xtask bench`: a fixed number
// of anonymous mmap / touch / munmap cycles, the syscalls `leak top` traces,
// timed from inside, with package bench's protocol: "ready", a line on
// stdin, one JSON line, then wait for stdin to close.
package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"

	"leaktests/internal/bench"
)

func main() {
	n := flag.Int("n", 200000, "mmap/munmap cycles")
	size := flag.Int("size", 64<<10, "bytes per mapping")
	flag.Parse()
	run := bench.Ready()
	for i := 0; i < *n; i++ {
		m, err := syscall.Mmap(-1, 0, *size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchmmap:", err)
			os.Exit(1)
		}
		m[0] = byte(i) // fault one page in, so RSS moves too
		if err := syscall.Munmap(m); err != nil {
			fmt.Fprintln(os.Stderr, "benchmmap:", err)
			os.Exit(1)
		}
	}
	run.Done(map[string]any{"cycles": *n})
}
