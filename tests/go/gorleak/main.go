// gorleak is a service that leaks one goroutine per request, the commonest
// Go leak: /work hands its result to a goroutine that sends it on a channel
// nobody receives from once the handler has answered (a timeout path), so
// every request leaves one goroutine blocked in chan send, created by the
// handler. Its steady twin: a pool of 8 workers parked on a jobs channel.
// It serves /debug/pprof/goroutine, the ground truth.
package main

import (
	"flag"
	"net/http"
	_ "net/http/pprof"

	"leaktests/internal/svc"
)

// Workers in the pool.
const workers = 8

var jobs = make(chan []byte)

func worker() {
	for job := range jobs {
		_ = job
	}
}

// compute sends its result to whoever waits for it; after a timeout,
// nobody does.
func compute(result chan<- []byte) {
	result <- make([]byte, 512)
}

func handle(w http.ResponseWriter, r *http.Request) {
	result := make(chan []byte)
	go compute(result)
	// The caller gave up at once: the result is never received.
	w.Write([]byte("timed out\n"))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	for i := 0; i < workers; i++ {
		go worker()
	}
	http.HandleFunc("/work", handle)
	svc.Serve(*addr)
}
