// benchscale is the Scale workload of `cargo xtask bench`: it allocates
// through 100,000 distinct call stacks and keeps every object, so a tracer
// has 100,000 stacks to aggregate, symbolize and write out.
//
// Stack n (0 ≤ n < 10^depth) is a chain of depth calls among f0…f9, one per
// decimal digit of n: main → next → f<digit0> → next → f<digit1> → … and the
// last one allocates. Folded stacks keep function names, so the distinct
// function sequences are distinct lines in `leak trace --folded`.
//
// -memprofilerate 1 has Go's own sampler record every allocation, so the
// program's own heap profile holds a bucket per stack: what `leak heap`
// reads in the bench's records arm.
//
// It follows package bench's protocol: "ready", a line on stdin, allocate,
// one JSON line, then wait for stdin to close before exiting.
package main

import (
	"flag"

	"leaktests/internal/bench"
)

const objectSize = 128

// live keeps every object, so every stack has outstanding bytes.
var live [][]byte

// next calls f<last digit of n>: one distinct call path per digit.
//
//go:noinline
func next(d, n int) {
	switch n % 10 {
	case 0:
		f0(d, n)
	case 1:
		f1(d, n)
	case 2:
		f2(d, n)
	case 3:
		f3(d, n)
	case 4:
		f4(d, n)
	case 5:
		f5(d, n)
	case 6:
		f6(d, n)
	case 7:
		f7(d, n)
	case 8:
		f8(d, n)
	case 9:
		f9(d, n)
	}
}

//go:noinline
func f0(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f1(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f2(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f3(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f4(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f5(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f6(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f7(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f8(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

//go:noinline
func f9(d, n int) {
	if d == 0 {
		live = append(live, make([]byte, objectSize))
		return
	}
	next(d-1, n/10)
}

func main() {
	depth := flag.Int("depth", 5, "digits per stack: 10^depth distinct stacks")
	passes := flag.Int("passes", 1, "objects allocated per stack")
	sampling := bench.SamplingFlag()
	flag.Parse()
	sampling()
	stacks := 1
	for i := 0; i < *depth; i++ {
		stacks *= 10
	}
	live = make([][]byte, 0, stacks**passes)
	run := bench.Ready()
	for p := 0; p < *passes; p++ {
		for n := 0; n < stacks; n++ {
			next(*depth-1, n)
		}
	}
	run.Done(map[string]any{"stacks": stacks, "objects": len(live)})
}
