// hostile is a target that makes a tracer's life hard, with known ground
// truth. It keeps exactly 16 MiB in keepForever and parks exactly 100
// goroutines in parked, prints "ready pid N", then:
//   - with -churn, mutates what a reader walks as fast as it can: goroutines
//     start and end all the time (the runtime's goroutine list changes under
//     a read) and allocations go through ever new call stacks of random
//     depth, a window of them kept (new heap profile records, records
//     changing), so GCs run constantly;
//   - with -gentle as well, turns the GC off and churns a thousand times
//     slower: the records still change under a read (new call stacks, new
//     records), but no GC publishes a new cycle while leak reads;
//   - on SIGUSR1, execs -exec (with -exec-arg) in its place, same pid.
//
// The heap profile records every allocation (MemProfileRate 1), so its
// figures are exact.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

var (
	kept   [][]byte
	window [4096][]byte
	block  = make(chan struct{})
)

// keepForever holds 256 × 64 KiB, exactly 16 MiB, until the process exits.
//
//go:noinline
func keepForever() {
	for i := 0; i < 256; i++ {
		kept = append(kept, make([]byte, 64<<10))
	}
}

// parked blocks forever on a channel nobody sends on.
//
//go:noinline
func parked(wg *sync.WaitGroup) {
	wg.Done()
	<-block
}

// deep allocates n bytes d calls below itself: a call stack per depth.
//
//go:noinline
func deep(d, n int) []byte {
	if d == 0 {
		return make([]byte, n)
	}
	return deep(d-1, n)
}

// churn allocates through stacks of random depth forever, keeping a window;
// gently, a millisecond's pause after each allocation.
func churn(seed uint64, gently bool) {
	x := seed
	for i := 0; ; i++ {
		if gently {
			time.Sleep(time.Millisecond)
		}
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		window[x%uint64(len(window))] = deep(int(x%40), int(x%2048)+16)
		if i%64 == 0 {
			// Goroutines that come and go, each a few frames deep.
			var wg sync.WaitGroup
			for g := 0; g < 32; g++ {
				wg.Add(1)
				go func(d int) {
					defer wg.Done()
					_ = deep(d, 64)
					time.Sleep(time.Microsecond)
				}(g % 8)
			}
			wg.Wait()
		}
	}
}

func main() {
	runtime.MemProfileRate = 1
	doChurn := flag.Bool("churn", false, "mutate goroutines and heap records constantly")
	gentle := flag.Bool("gentle", false, "with -churn: no GC, and a pause after each allocation")
	exec := flag.String("exec", "/bin/sleep", "program to exec on SIGUSR1")
	execArg := flag.String("exec-arg", "600", "its argument")
	flag.Parse()
	keepForever()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go parked(&wg)
	}
	wg.Wait()
	runtime.GC()
	runtime.GC()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	if *doChurn {
		if *gentle {
			debug.SetGCPercent(-1)
		}
		go churn(0x2545f4914f6cdd1d, *gentle)
		go churn(0x9e3779b97f4a7c15, *gentle)
	}
	fmt.Printf("ready pid %d\n", os.Getpid())
	<-usr1
	err := syscall.Exec(*exec, []string{*exec, *execArg}, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(1)
}
