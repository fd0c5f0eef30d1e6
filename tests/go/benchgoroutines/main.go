// benchgoroutines is the Goroutines workload of `cargo xtask bench`: it
// parks -n goroutines a few frames deep, each blocked one of seven ways
// (channel send, channel receive, select, sync.Mutex, sync.RWMutex,
// sync.Cond, sync.WaitGroup), so `leak goroutines` has -n goroutines and
// their stacks to read: 7 ways × 5 depths, 35 groups.
//
// Goroutine i blocks the way i%7 at 1 + (i/7)%5 calls of descend below
// park. Nothing ever wakes them; the process exits when stdin closes.
//
// It follows package bench's protocol: "ready", a line on stdin, start the
// goroutines and wait until each is about to block, one JSON line
// ("parked": -n, "goroutines": runtime.NumGoroutine(), what pprof counts),
// then wait for stdin to close before exiting.
package main

import (
	"flag"
	"runtime"
	"sync"
	"time"

	"leaktests/internal/bench"
)

const (
	ways   = 7
	depths = 5
)

var (
	sendTo   = make(chan int)
	recvFrom = make(chan int)
	selectA  = make(chan int)
	selectB  = make(chan string)
	held     sync.Mutex
	rw       sync.RWMutex
	cond     = sync.NewCond(&sync.Mutex{})
	never    sync.WaitGroup
	started  sync.WaitGroup
)

//go:noinline
func park(way int) {
	started.Done()
	switch way {
	case 0:
		sendTo <- 1
	case 1:
		<-recvFrom
	case 2:
		select {
		case <-selectA:
		case <-selectB:
		}
	case 3:
		held.Lock()
	case 4:
		rw.Lock()
	case 5:
		cond.L.Lock()
		for {
			cond.Wait()
		}
	case 6:
		never.Wait()
	}
}

// descend adds d frames above park: the depth part of the group.
//
//go:noinline
func descend(way, d int) {
	if d == 0 {
		park(way)
		return
	}
	descend(way, d-1)
}

func main() {
	n := flag.Int("n", 100000, "goroutines to park")
	flag.Parse()
	held.Lock()
	rw.RLock()
	never.Add(1)
	run := bench.Ready()
	started.Add(*n)
	for i := 0; i < *n; i++ {
		go descend(i%ways, 1+(i/ways)%depths)
	}
	started.Wait()
	// Each has called Done just before blocking: let the last ones park.
	time.Sleep(50 * time.Millisecond)
	run.Done(map[string]any{
		"parked":     *n,
		"goroutines": runtime.NumGoroutine(),
		"groups":     ways * depths,
	})
}
