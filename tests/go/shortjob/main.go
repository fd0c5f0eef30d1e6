// shortjob is a batch job that lives about 60 ms: it keeps 32 objects of
// 64 KiB (2 MiB) in keep, sleeps, and exits with the status given by -exit.
// Built with -tags noprof it links no heap profiler, so Go starts it with
// heap sampling off; the default build references the profiler
// (noprof_off.go) and samples from start-up.
package main

import (
	"flag"
	"os"
	"time"
)

var kept [][]byte

// keep holds 32 × 64 KiB until the job exits.
//
//go:noinline
func keep() {
	for i := 0; i < 32; i++ {
		kept = append(kept, make([]byte, 64<<10))
	}
}

func main() {
	exit := flag.Int("exit", 0, "exit status")
	flag.Parse()
	keep()
	time.Sleep(60 * time.Millisecond)
	os.Exit(*exit)
}
