// inlined leaks through a small function the compiler inlines into its
// caller: newRecord is inlined into (*Store).Add (check with
// `go build -gcflags=-m`), so a frame-pointer walk sees only Add; the inline
// tree in .gopclntab restores newRecord, as Go's own profile shows it.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"sync"
)

// newRecord is small enough to be inlined.
func newRecord(n int) []byte {
	return make([]byte, n)
}

// Store keeps every record: the leak.
type Store struct {
	mu      sync.Mutex
	records [][]byte
}

// Add is not inlined (it locks and defers), newRecord is inlined into it.
func (s *Store) Add() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, newRecord(12000))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	store := &Store{}
	http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		store.Add()
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", *addr)
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
