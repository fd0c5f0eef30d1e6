// Package svc is what the test services share besides their handlers:
// listen, say where, serve. It imports no profiling package, so a service
// that uses it still starts with Go's heap sampling off unless it imports
// one itself.
package svc

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

// Serve listens on addr ("127.0.0.1:0" picks a free port), prints
// "listening on ADDR" as the first line of stdout (the tests and the bench
// read it) and serves http.DefaultServeMux until it fails, then exits 1.
func Serve(addr string) {
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
