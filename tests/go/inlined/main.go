// inlined leaks through a small function the compiler inlines into its
// caller: newRecord is inlined into (*Store).Add (check with
// `go build -gcflags=-m`), so a frame-pointer walk sees only Add; the inline
// tree in .gopclntab restores newRecord, as Go's own profile shows it.
package main

import (
	"flag"
	"net/http"
	_ "net/http/pprof"
	"sync"

	"leaktests/internal/svc"
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

// AddDeep keeps a bigger record, so its stack is the largest in the heap.
func (s *Store) AddDeep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, make([]byte, 24000))
}

// descend recurses n levels and then leaks: a stack deeper than the 127
// frames a kernel stack walk can give. Go's profile keeps up to
// GODEBUG=profstackdepth frames (128 by default since go1.23).
//
//go:noinline
func descend(s *Store, n int) {
	if n == 0 {
		s.AddDeep()
		return
	}
	descend(s, n-1)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	store := &Store{}
	http.HandleFunc("/work", func(w http.ResponseWriter, r *http.Request) {
		store.Add()
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/deep", func(w http.ResponseWriter, r *http.Request) {
		descend(store, 150)
		w.Write([]byte("ok\n"))
	})
	svc.Serve(*addr)
}
