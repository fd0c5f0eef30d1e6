//go:build !noprof

package main

// The service's own heap profile at /debug/pprof/heap: the ground truth.
// Importing it also keeps Go's heap sampling on from start-up; seednoprof
// (-tags noprof) leaves it out.
import _ "net/http/pprof"
