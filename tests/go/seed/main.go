// seed is the service from the seed article: its /work handler keeps 10,000
// bytes per request forever, in (*RequestTracker).Track. It serves its own
// heap profile at /debug/pprof/heap (pprof.go), the ground truth leak is
// checked against. Built with -tags noprof it is seednoprof: no profiling
// package, so Go starts it with heap sampling off (MemProfileRate = 0).
package main

import (
	"bytes"
	"flag"
	"net/http"
	"sync"

	"leaktests/internal/svc"
)

// RequestTracker remembers every request's payload: the leak.
type RequestTracker struct {
	mu   sync.Mutex
	data [][]byte
}

// Track keeps 10,000 bytes for the request and never lets go of them.
func (t *RequestTracker) Track(req *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.data = append(t.data, bytes.Repeat([]byte("a"), 10000))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	tracker := &RequestTracker{}
	http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		tracker.Track(r)
		w.Write([]byte("ok\n"))
	})
	svc.Serve(*addr)
}
