// behaviours does three things at once, each in its own function so a
// profile tells them apart:
//   - fillCache: fills a 50 MB cache during the first 10 s, then keeps it
//     (steady: it filled, then stopped);
//   - leakTick: keeps 20 KiB every 100 ms, 200 KiB/s, forever (a leak);
//   - churn: allocates short-lived 32 KiB buffers at over 100 MB/s and keeps
//     none of them (churn).
package main

import (
	"fmt"
	"time"
)

var (
	cache  [][]byte
	leaked [][]byte
	// last keeps the latest churn buffer reachable so it escapes to the
	// heap (a non-escaping make of this size would live on the stack).
	last []byte
)

//go:noinline
func fillCache(n int) {
	for i := 0; i < n; i++ {
		cache = append(cache, make([]byte, 64<<10))
	}
}

//go:noinline
func leakTick() {
	leaked = append(leaked, make([]byte, 20<<10))
}

//go:noinline
func churn(n int) {
	for i := 0; i < n; i++ {
		last = make([]byte, 32<<10)
		last[i%len(last)] = byte(i)
	}
}

func main() {
	fmt.Println("running")
	start := time.Now()
	const cacheBytes = 50 << 20
	perStep := cacheBytes / (64 << 10) / 100 // 100 steps over 10 s
	filled := 0
	tick := time.NewTicker(100 * time.Millisecond)
	for range tick.C {
		if filled < 100 {
			fillCache(perStep)
			filled++
		}
		leakTick()
		// 12 MB per 100 ms: 120 MB/s of garbage.
		churn(384)
		_ = start
	}
}
