// benchmmap is the `leak top` workload of `cargo xtask bench`: a fixed number
// of anonymous mmap / touch / munmap cycles, the syscalls `leak top` traces,
// timed from inside. Same protocol as benchbatch: "ready", a line on stdin,
// one JSON line, then wait for stdin to close.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// cpuSeconds is the process's user + system CPU time so far: tracepoint
// programs run as system time of the thread that made the call.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func main() {
	n := flag.Int("n", 200000, "mmap/munmap cycles")
	size := flag.Int("size", 64<<10, "bytes per mapping")
	flag.Parse()
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(1)
	}
	cpu0 := cpuSeconds()
	start := time.Now()
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
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	out, _ := json.Marshal(map[string]any{"cycles": *n, "seconds": secs, "cpu_seconds": cpu})
	fmt.Println(string(out))
	io.Copy(io.Discard, in)
}
