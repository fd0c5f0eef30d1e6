// Package bench is what the `cargo xtask bench` workloads share: the
// -memprofilerate flag, CPU time, and the protocol of the batch workloads:
// print "ready", wait for a line on stdin (so a tracer can attach first), do
// the work and time it from inside, print one JSON line, then wait for stdin
// to close before exiting (so a tracer can be stopped while the process
// still runs). It imports no profiling package: heap sampling starts off
// unless -memprofilerate turns it on.
package bench

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"
)

// SamplingFlag registers -memprofilerate; the function it returns, called
// after flag.Parse, turns Go's heap sampling on at that rate when it is
// above 0 (no tracer needed: to tell Go's own sampling cost from leak's).
func SamplingFlag() func() {
	rate := flag.Int("memprofilerate", 0, "if > 0, turn Go's heap sampling on at this rate (no tracer needed)")
	return func() {
		if *rate > 0 {
			runtime.MemProfileRate = *rate
		}
	}
}

// CPUSeconds is the process's user + system CPU time so far: time spent in
// uprobe handlers and tracepoint programs is system time of the thread
// that hit them.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// Run times one piece of work between "ready" and the result line.
type Run struct {
	in    *bufio.Reader
	cpu0  float64
	start time.Time
}

// Ready prints "ready" and returns once a line arrives on stdin (exits 1
// if stdin closes first); the clock starts then.
func Ready() *Run {
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(1)
	}
	return &Run{in: in, cpu0: CPUSeconds(), start: time.Now()}
}

// Done stops the clock, prints result with "seconds" (wall) and
// "cpu_seconds" added as one JSON line, and waits for stdin to close.
func (r *Run) Done(result map[string]any) {
	result["seconds"] = time.Since(r.start).Seconds()
	result["cpu_seconds"] = CPUSeconds() - r.cpu0
	out, _ := json.Marshal(result)
	fmt.Println(string(out))
	io.Copy(io.Discard, r.in)
}
