// Command ratewatch prints its heap sampling rate (runtime.MemProfileRate)
// as "rate=N" at start and every 200 ms, and allocates a little in between
// so the runtime keeps sampling. It imports no profiling package, so Go
// starts it with sampling off (rate=0): a test watches leak turn sampling
// on and put it back.
package main

import (
	"fmt"
	"runtime"
	"time"
)

// keep holds the last few allocations so some survive a GC or two.
var keep [64][]byte

func main() {
	fmt.Printf("rate=%d\n", runtime.MemProfileRate)
	report := time.NewTicker(200 * time.Millisecond)
	work := time.NewTicker(5 * time.Millisecond)
	for i := 0; ; i++ {
		select {
		case <-report.C:
			fmt.Printf("rate=%d\n", runtime.MemProfileRate)
		case <-work.C:
			for j := 0; j < 16; j++ {
				keep[(i*16+j)%len(keep)] = make([]byte, 1024+j*64)
			}
		}
	}
}
