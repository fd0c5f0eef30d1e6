// steadysvc is the seed service's well-behaved twin: its /work handler
// allocates the same 10,000 bytes per request, but keeps only the last
// -keep requests' payloads (a ring), so the live set stays constant and
// memory is a garbage collector's sawtooth that levels off.
package main

import (
	"bytes"
	"flag"
	"net/http"
	"sync"

	"leaktests/internal/svc"
)

// RecentRequests remembers the payloads of the last few requests only.
type RecentRequests struct {
	mu   sync.Mutex
	ring [][]byte
	next int
}

// Track keeps 10,000 bytes for the request, replacing the oldest.
func (t *RecentRequests) Track(req *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ring[t.next%len(t.ring)] = bytes.Repeat([]byte("a"), 10000)
	t.next++
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	keep := flag.Int("keep", 1000, "payloads kept (the live set)")
	flag.Parse()
	recent := &RecentRequests{ring: make([][]byte, *keep)}
	http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		recent.Track(r)
		w.Write([]byte("ok\n"))
	})
	svc.Serve(*addr)
}
