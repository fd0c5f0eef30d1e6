// benchbatch is the Batch workload of `cargo xtask bench`: a fixed amount of
// allocation-heavy work, timed from inside so process start-up is left out.
//
//	-mode json   JSON round trips of small records (many small objects)
//	-mode large  building and encoding large objects (slices, maps, buffers)
//
// It follows the protocol of package bench ("ready", a line on stdin, one
// JSON line, wait for stdin to close). It does not import runtime/pprof:
// heap sampling starts off, unless -memprofilerate turns it on (to tell Go's
// own sampling cost from leak's).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"

	"leaktests/internal/bench"
)

// Record is one small JSON record.
type Record struct {
	ID    int               `json:"id"`
	Name  string            `json:"name"`
	Score float64           `json:"score"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
}

var sink int

func jsonRoundTrips(n int) {
	for i := 0; i < n; i++ {
		r := Record{
			ID:    i,
			Name:  "record-" + strconv.Itoa(i),
			Score: float64(i) / 3,
			Tags:  []string{"alpha", "beta", strconv.Itoa(i % 13)},
			Attrs: map[string]string{"k": "v", "n": strconv.Itoa(i)},
		}
		b, err := json.Marshal(&r)
		if err != nil {
			panic(err)
		}
		var back Record
		if err := json.Unmarshal(b, &back); err != nil {
			panic(err)
		}
		sink += back.ID + len(back.Tags)
	}
}

// Block is a larger object: a buffer, an index and a table.
type Block struct {
	Data  []byte
	Index map[int][]int64
	Rows  [][]string
}

func largeObjects(n int) {
	keep := make([]*Block, 8) // a small window stays live, like a pipeline
	for i := 0; i < n; i++ {
		b := &Block{
			Data:  make([]byte, 256<<10),
			Index: make(map[int][]int64, 256),
			Rows:  make([][]string, 0, 512),
		}
		for j := 0; j < len(b.Data); j += 4096 {
			b.Data[j] = byte(i + j)
		}
		for j := 0; j < 256; j++ {
			b.Index[j] = make([]int64, 64)
		}
		for j := 0; j < 512; j++ {
			b.Rows = append(b.Rows, []string{strconv.Itoa(j), "x"})
		}
		var buf bytes.Buffer
		buf.Write(b.Data[:64<<10])
		sink += buf.Len() + len(b.Index) + len(b.Rows)
		keep[i%len(keep)] = b
	}
}

func main() {
	mode := flag.String("mode", "json", "json or large")
	n := flag.Int("n", 200000, "iterations")
	sampling := bench.SamplingFlag()
	flag.Parse()
	sampling()
	var work func(int)
	switch *mode {
	case "json":
		work = jsonRoundTrips
	case "large":
		work = largeObjects
	default:
		fmt.Fprintln(os.Stderr, "benchbatch: -mode must be json or large")
		os.Exit(2)
	}
	run := bench.Ready()
	work(*n)
	run.Done(map[string]any{"mode": *mode, "iterations": *n})
}
