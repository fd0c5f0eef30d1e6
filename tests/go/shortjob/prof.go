//go:build !noprof

package main

import (
	"os"
	"runtime"
)

// A reachable call of the heap profile keeps Go's sampling on from
// start-up, as in any program that imports net/http/pprof or runtime/pprof.
func init() {
	if len(os.Args) > 1<<20 {
		runtime.MemProfile(nil, false)
	}
}
