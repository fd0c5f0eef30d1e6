// Package svc is what the test services share besides their handlers:
// listen, say where, serve, and tell their own heap figures at
// /debug/memstats (the ground truth for what leak reads of the GC). It imports no profiling package, so a service
// that uses it still starts with Go's heap sampling off unless it imports
// one itself.
package svc

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
)

// memstats runs a full GC, then answers with the runtime's own figures,
// one "name value" per line: heap_alloc (runtime.MemStats.HeapAlloc right
// after the GC: what survived it) and num_gc.
func memstats(w http.ResponseWriter, r *http.Request) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Fprintf(w, "heap_alloc %d\nnum_gc %d\n", m.HeapAlloc, m.NumGC)
}

// Serve answers /debug/memstats, listens on addr ("127.0.0.1:0" picks a
// free port), prints
// "listening on ADDR" as the first line of stdout (the tests and the bench
// read it) and serves http.DefaultServeMux until it fails, then exits 1.
func Serve(addr string) {
	http.HandleFunc("/debug/memstats", memstats)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
